"""A user's own environment: ``module:EnvId`` and env kwargs from the CLI, a callable from Python."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import policygrad
from policygrad import env_source
from policygrad.errors import PolicygradError

CORRIDOR = textwrap.dedent(
    '''
    import gymnasium as gym
    import numpy as np

    class Corridor(gym.Env):
        """Walk right along `size` cells: reward 1 at the end, -0.01 per other step."""

        def __init__(self, size=5):
            self.size = size
            self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)
            self.action_space = gym.spaces.Discrete(2)

        def _obs(self):
            obs = np.zeros(self.size, np.float32)
            obs[self.pos] = 1.0
            return obs

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.pos = 0
            return self._obs(), {}

        def step(self, action):
            self.pos = max(0, min(self.size - 1, self.pos + (1 if int(action) == 1 else -1)))
            done = self.pos == self.size - 1
            return self._obs(), (1.0 if done else -0.01), done, False, {}

    gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=50)

    def make_corridor(size=5):
        return gym.wrappers.TimeLimit(Corridor(size), 50)
    '''
)


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "corridor_env.py").write_text(CORRIDOR)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    return folder


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "policygrad.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_module_env_with_kwargs_trains_evaluates_and_resumes_from_the_cli(user_module, tmp_path):
    run = tmp_path / "run"
    out = cli("train", "a2c", "corridor_env:Corridor-v0", "--env-kwarg", "size=6", "--steps", "12000",
              "--out", str(run), "--quiet", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["env_id"] == "corridor_env:Corridor-v0" and config["env_kwargs"] == {"size": 6}
    result = json.loads(cli("eval", str(run), "--json", cwd=tmp_path).stdout)
    # Five steps right through six cells: 1 − 4 × 0.01, reached only on the corridor of size 6.
    assert result["mean_return"] == pytest.approx(0.96)
    resumed = cli("resume", str(run), "--steps", "14000", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


def test_a_callable_is_recorded_by_its_importable_name(user_module, tmp_path):
    import corridor_env

    agent, history = policygrad.train(
        "a2c", corridor_env.make_corridor, out=tmp_path / "run", total_steps=2000, env_kwargs={"size": 4}
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["env_id"] == "corridor_env:make_corridor" and history[-1]["env_step"] >= 2000
    assert policygrad.evaluate(tmp_path / "run", episodes=2)["episodes"] == 2
    with pytest.raises(PolicygradError, match="lambda"):
        policygrad.train("a2c", lambda: corridor_env.Corridor(), out=tmp_path / "other", total_steps=100)


@pytest.mark.parametrize(
    "env_id,message",
    [
        ("no_such_module_here:Env-v0", "cannot import module 'no_such_module_here'"),
        ("corridor_env:Nope-v0", "registers no environment 'Nope-v0'"),
        ("CartPol-v1", "did you mean 'CartPole-v1'"),
    ],
)
def test_bad_environments_get_one_clear_line(user_module, tmp_path, env_id, message):
    out = cli("train", "ppo", env_id, "--steps", "100", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_bad_env_kwargs_get_one_clear_line(user_module, tmp_path):
    for flags, message in ((["--env-kwargs", "[1]"], "JSON object"), (["--env-kwarg", "size"], "KEY=VALUE")):
        out = cli("train", "ppo", "corridor_env:Corridor-v0", *flags, "--out", str(tmp_path / "r"), cwd=tmp_path)
        assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr


def test_kwargs_make_a_distinct_registered_id_and_the_same_kwargs_the_same_one(user_module):
    import gymnasium as gym

    small, same = (
        env_source.resolve("corridor_env:Corridor-v0", {"size": 3}),
        env_source.resolve("corridor_env:Corridor-v0", {"size": 3}),
    )
    assert small == same != env_source.resolve("corridor_env:Corridor-v0", {"size": 4})
    assert gym.make(small).unwrapped.size == 3
