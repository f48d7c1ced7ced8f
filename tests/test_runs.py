"""The run folder (policygrad.runs): one-line errors for every way a folder can be wrong."""

import json
import subprocess
import sys

import pytest

from policygrad.errors import PolicygradError
from policygrad.runs import default_run_dir, read_run_config, write_run_config, write_summary

GYM = {"algo": "a2c", "preset": False, "config": {"env_id": "CartPole-v1"}}
LM = {"algo": "rloo", "reference": "ref", "vocab_size": 16, "config": {"task": "sum"}}


@pytest.mark.parametrize(
    "content,kind,message",
    [
        (None, "gym", "does not exist"),
        ("", "gym", "not a policygrad run folder (no config.json)"),
        ("{not json", "gym", "is corrupt"),
        ("{not json", "lm", "is corrupt"),
        ("[1, 2]", "lm", "is corrupt"),
        (json.dumps({"format": "policygrad-lm", "model": {}}), "lm", "describes no run"),
        (json.dumps({"algo": "a2c", "config": {}}), "gym", "is corrupt (no config.env_id)"),
        (json.dumps(LM), "gym", "is a language-model run folder; use 'policygrad lm resume"),
        (json.dumps(GYM), "lm", "is a Gymnasium run folder; use 'policygrad resume"),
    ],
)
def test_bad_run_folders_are_one_clear_line(tmp_path, content, kind, message):
    run_dir = tmp_path / "run"
    if content is not None:
        run_dir.mkdir()
        if content:
            (run_dir / "config.json").write_text(content)
    with pytest.raises(PolicygradError) as err:
        read_run_config(run_dir, kind)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_and_summary_round_trip(tmp_path, monkeypatch):
    write_run_config(tmp_path, GYM)
    assert read_run_config(tmp_path) == GYM
    write_run_config(tmp_path, LM)
    assert read_run_config(tmp_path, "lm") == LM
    assert json.loads(write_summary(tmp_path, {"updates": 3}).read_text()) == {"updates": 3}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left
    monkeypatch.chdir(tmp_path)
    first = default_run_dir("ppo", "ALE/Pong-v5", 1)
    assert str(first) == "runs/ppo-ALE_Pong-v5-seed1"
    first.mkdir(parents=True)
    assert default_run_dir("ppo", "ALE/Pong-v5", 1).name == "ppo-ALE_Pong-v5-seed1-2"


def test_local_collection_does_not_enter_the_ray_package():
    code = (
        "import sys\n"
        "from policygrad.trainer import resolve_config\n"
        "from policygrad.collectors import make_collector\n"
        "from policygrad.envs import make_envs\n"
        "from policygrad.agent import Agent, AgentSpec\n"
        "envs, info = make_envs('CartPole-v1', 2)\n"
        "agent = Agent(AgentSpec(obs_dim=info.obs_dim, discrete=True, action_dim=info.action_dim, hidden_sizes=(8,),"
        " activation='tanh', critic=False))\n"
        "make_collector(envs, agent, resolve_config('a2c', 'CartPole-v1', {'backend': 'local'})[0])\n"
        "print(sorted(m for m in sys.modules if m.startswith('policygrad.distributed') or m == 'ray'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
