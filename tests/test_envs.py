"""Vector environment kinds, space validation and normaliser statistics."""

import subprocess
import sys

import numpy as np
import pytest

from policygrad.env_state import pickle_envs
from policygrad.envs import load_normalizer_state, make_envs, normalizer_state
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
        assert (pickle_envs(envs) is None) == (mode == "async")
    finally:
        envs.close()


def test_unsupported_spaces_are_refused():
    _, blackjack = make_envs("Blackjack-v1", 1, "sync")  # a Tuple of Discretes: flattened, one-hot each
    assert blackjack.obs_dim == 32 + 11 + 2
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


@pytest.mark.parametrize(
    "env_id,vectorization", [("CartPole-v1", "sync"), ("CartPole-v1", "native"), ("Pendulum-v1", "sync")]
)
def test_episode_statistics_equal_gymnasiums_record_episode_statistics(env_id, vectorization):
    """policygrad's lean EpisodeStatistics reports what Gymnasium's RecordEpisodeStatistics does, step for step."""
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    from policygrad.envs import EpisodeStatistics, make_envs, reset_seeds

    ours, _ = make_envs(env_id, 4, vectorization)
    assert isinstance(ours, EpisodeStatistics)
    theirs = RecordEpisodeStatistics(make_envs(env_id, 4, vectorization)[0].env)
    seeds = reset_seeds(vectorization, 3, 4)
    ours.reset(seed=seeds)
    theirs.reset(seed=seeds)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(700):
        actions = np.stack([ours.single_action_space.sample() for _ in range(4)])
        if env_id == "Pendulum-v1":
            actions = rng.uniform(-2, 2, size=(4, 1)).astype(np.float32)
        a, b = ours.step(actions), theirs.step(actions)
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        assert ("episode" in a[4]) == ("episode" in b[4])
        if "episode" in a[4]:
            ended += int(a[4]["_episode"].sum())
            np.testing.assert_array_equal(a[4]["_episode"], b[4]["_episode"])
            np.testing.assert_array_equal(a[4]["episode"]["r"], b[4]["episode"]["r"])
            np.testing.assert_array_equal(a[4]["episode"]["l"], b[4]["episode"]["l"])
    assert ended >= 4  # episodes did end (CartPole by failing, Pendulum by its 200-step limit)
