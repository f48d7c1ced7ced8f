"""Vector environment kinds, space validation and normaliser statistics."""

import subprocess
import sys

import numpy as np
import pytest

from policygrad.envs import load_normalizer_state, make_envs, normalizer_state, snapshot
from policygrad.errors import PolicygradError


@pytest.mark.parametrize(
    "mode,kind", [("sync", "SyncVectorEnv"), ("async", "AsyncVectorEnv"), ("native", "CartPoleVectorEnv")]
)
def test_each_vectorization_steps_cartpole(mode, kind):
    envs, info = make_envs("CartPole-v1", 3, mode)
    try:
        assert type(envs.unwrapped).__name__ == kind
        obs, _ = envs.reset(seed=0 if mode == "native" else [0, 1, 2])
        assert obs.shape == (3, 4) and info.discrete and info.action_dim == 2
        envs.step(np.zeros(3, dtype=np.int64))
        assert (snapshot(envs) is None) == (mode == "async")
    finally:
        envs.close()


def test_unsupported_spaces_are_refused():
    with pytest.raises(PolicygradError, match="flat Box"):
        make_envs("Blackjack-v1", 1, "sync")
    with pytest.raises(PolicygradError, match="no native vector implementation"):
        make_envs("Pendulum-v1", 1, "native")


def test_normalizer_statistics_round_trip():
    envs, _ = make_envs("Pendulum-v1", 2, "sync", normalize_obs=True, normalize_reward=True)
    envs.reset(seed=[0, 1])
    for _ in range(20):
        envs.step(np.ones((2, 1), dtype=np.float32))
    state = normalizer_state(envs)
    fresh, _ = make_envs("Pendulum-v1", 2, "sync", normalize_obs=True, normalize_reward=True)
    load_normalizer_state(fresh, state)
    assert normalizer_state(fresh) == state and state["obs"]["count"] > 20


def test_async_run_resumes_with_restarted_episodes(tmp_path):
    run_dir = tmp_path / "run"
    base = [sys.executable, "-m", "policygrad.cli"]
    subprocess.run(
        [
            *base,
            "train",
            "a2c",
            "CartPole-v1",
            "--steps",
            "400",
            "--num-envs",
            "2",
            "--out",
            str(run_dir),
            "--quiet",
            "--set",
            "vectorization=async",
            "--set",
            "eval_episodes=1",
        ],
        check=True,
    )
    proc = subprocess.run([*base, "resume", str(run_dir), "--steps", "800"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "episodes restart on resume" in proc.stderr
