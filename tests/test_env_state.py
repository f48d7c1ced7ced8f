"""The environments' state as data: exact, JSON only, and never code from the run folder."""

import json
import pickle

import numpy as np
import pytest

from policygrad.env_state import EnvStateError, apply, capture
from policygrad.envs import make_envs, reset_seeds

try:
    import mujoco  # noqa: F401
except ImportError:
    mujoco = None
NEEDS_MUJOCO = pytest.mark.skipif(mujoco is None, reason="needs gymnasium[mujoco]")


def actions_for(info, rng, n):
    if info.discrete:
        return rng.integers(0, info.action_dim, n)
    return rng.uniform(-1, 1, (n, info.action_dim)).astype(np.float32)


@pytest.mark.parametrize(
    "env_id,mode",
    [
        ("CartPole-v1", "sync"),
        ("CartPole-v1", "batched"),
        ("CartPole-v1", "native"),
        ("Pendulum-v1", "sync"),
        ("Acrobot-v1", "sync"),
        ("MountainCarContinuous-v0", "sync"),
        pytest.param("InvertedPendulum-v5", "sync", marks=NEEDS_MUJOCO),
        pytest.param("HalfCheetah-v5", "sync", marks=NEEDS_MUJOCO),  # contacts: the solver's warm start
        pytest.param("Ant-v5", "sync", marks=NEEDS_MUJOCO),  # reads positions the last step derived
    ],
)
def test_state_as_json_continues_bit_for_bit(env_id, mode):
    """Episodes in flight, TimeLimit counts, generators, episode statistics and normalisers all travel."""
    kwargs = {"normalize_obs": True, "normalize_reward": True}
    envs, info = make_envs(env_id, 3, mode, **kwargs)
    envs.reset(seed=reset_seeds(mode, 5, 3))
    rng = np.random.default_rng(0)
    for _ in range(137):
        envs.step(actions_for(info, rng, 3))
    text = json.dumps(capture(envs))
    fresh, _ = make_envs(env_id, 3, mode, **kwargs)
    apply(fresh, json.loads(text))
    for _ in range(600):  # across episode ends, autoresets and truncations
        actions = actions_for(info, rng, 3)
        a, b = envs.step(actions), fresh.step(actions)
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        assert ("episode" in a[4]) == ("episode" in b[4])


def test_unknown_and_subprocess_envs_are_refused_with_a_reason():
    envs, _ = make_envs("CartPole-v1", 2, "async")
    try:
        with pytest.raises(EnvStateError, match="subprocess"):
            capture(envs)
    finally:
        envs.close()


def test_state_of_other_envs_or_crafted_values_is_refused():
    envs, _ = make_envs("CartPole-v1", 2, "sync")
    envs.reset(seed=[0, 1])
    state = capture(envs)
    other, _ = make_envs("Pendulum-v1", 2, "sync")
    with pytest.raises(EnvStateError, match="not the ones this config builds"):
        apply(other, state)
    crafted = json.loads(json.dumps(state))
    crafted["layers"][0]["attrs"]["step"] = 1  # would replace a method
    with pytest.raises(EnvStateError, match="method"):
        apply(make_envs("CartPole-v1", 2, "sync")[0], crafted)
    crafted = json.loads(json.dumps(state))
    crafted["layers"][0]["attrs"]["episode_returns"] = {"ndarray": [0, 0], "dtype": "|O", "shape": [2]}
    with pytest.raises(EnvStateError, match="not read"):
        apply(make_envs("CartPole-v1", 2, "sync")[0], crafted)


def test_a_crafted_pickle_in_a_run_folder_is_never_unpickled(tmp_path):
    """resume, eval and load of a folder with a hostile envs.pkl: the pickle never runs."""
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    cli = [sys.executable, "-m", "policygrad.cli"]
    base = ["--quiet", "--set", "eval_episodes=1", "--set", "eval_every=0"]
    subprocess.run([*cli, "train", "a2c", "CartPole-v1", "--steps", "200", "--out", str(run_dir), *base], check=True)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Touch(str(marker)))
    for path in (run_dir / "checkpoints").glob("update_*"):
        (path / "envs.pkl").write_bytes(payload)
        state = json.loads((path / "state.json").read_text())
        state["env_state"] = None
        (path / "state.json").write_text(json.dumps(state))
    resume = subprocess.run([*cli, "resume", str(run_dir), "--steps", "400", "--quiet"], capture_output=True, text=True)
    assert resume.returncode == 0, resume.stderr
    assert "--trust-run-folder" in resume.stderr and "episodes restart on resume" in resume.stderr
    evaluation = subprocess.run([*cli, "eval", str(run_dir), "--episodes", "1"], capture_output=True, text=True)
    assert evaluation.returncode == 0, evaluation.stderr
    subprocess.run([sys.executable, "-c", f"import policygrad; policygrad.load({str(run_dir)!r})"], check=True)
    assert not marker.exists()


class Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class Crash(Exception):
    pass


@NEEDS_MUJOCO
@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "HalfCheetah-v5"])
def test_a_crashed_mujoco_run_resumes_to_the_same_rows_and_weights(tmp_path, env_id):
    """Episodes in flight on MuJoCo continue on resume as if never stopped (no --trust-run-folder)."""
    from test_checkpoint import assert_same_run

    from policygrad.trainer import Trainer, resolve_config

    settings = {"total_steps": 768, "num_envs": 2, "rollout_steps": 64, "minibatch_size": 64, "update_epochs": 2}
    settings |= {"normalize_obs": True, "checkpoint_every": 2, "eval_every": 0, "eval_episodes": 1}
    cfg, _ = resolve_config("ppo", env_id, settings)
    Trainer.new("ppo", cfg, tmp_path / "reference", quiet=True).run()

    def crash_at_update_5(row):  # after update 4's checkpoint; update 5's row is in metrics.csv
        if row["update"] == 5:
            raise Crash

    with pytest.raises(Crash):
        Trainer.new("ppo", cfg, tmp_path / "crashed", quiet=True).run(crash_at_update_5)
    resumed = Trainer.resume(tmp_path / "crashed", quiet=True)
    assert resumed.update == 4 and resumed.collector.state_dict() is not None
    resumed.run()
    assert_same_run(tmp_path / "reference", tmp_path / "crashed")
