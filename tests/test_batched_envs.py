"""The batched CartPole replica steps exactly (bit for bit) as Gymnasium's SyncVectorEnv of CartPole."""

from __future__ import annotations

import functools
import pickle

import gymnasium as gym
import numpy as np
import pytest

from policygrad.batched_envs import BatchedCartPole, replica
from policygrad.envs import EpisodeStatistics, make_envs, resolve_vectorization, seeds_each_env
from policygrad.errors import PolicygradError


def gymnasium_sync(env_id: str, n: int) -> gym.vector.VectorEnv:
    fns = [functools.partial(gym.make, env_id) for _ in range(n)]
    return EpisodeStatistics(gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP))


def controller(obs: np.ndarray, rng: np.random.Generator, flip: float) -> np.ndarray:
    """Balances the pole (long episodes, so the time limit truncates some) with random mistakes."""
    return ((obs[:, 2] + 0.5 * obs[:, 3] > 0) ^ (rng.random(len(obs)) < flip)).astype(np.int64)


def assert_same_step(ref: tuple, rep: tuple) -> None:
    for a, b in zip(ref[:4], rep[:4], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert ("episode" in ref[4]) == ("episode" in rep[4])
    if "episode" in ref[4]:
        for key in ("r", "l"):
            assert ref[4]["episode"][key].dtype == rep[4]["episode"][key].dtype
            np.testing.assert_array_equal(ref[4]["episode"][key], rep[4]["episode"][key])
        np.testing.assert_array_equal(ref[4]["_episode"], rep[4]["_episode"])


@pytest.mark.parametrize(
    ("env_id", "n", "steps"), [("CartPole-v1", 8, 12_000), ("CartPole-v0", 3, 3_000), ("CartPole-v1", 64, 1_500)]
)
def test_steps_exactly_as_gymnasium_sync(env_id: str, n: int, steps: int) -> None:
    ref, rep = gymnasium_sync(env_id, n), replica(env_id, n)
    seeds = [11 * i + 5 for i in range(n)]
    obs, _ = ref.reset(seed=seeds)
    obs_rep, _ = rep.reset(seed=seeds)
    np.testing.assert_array_equal(obs, obs_rep)
    rng = np.random.default_rng(0)
    truncations = terminations = 0
    for t in range(steps):
        flip = 0.02 if (t // 700) % 2 == 0 else 0.5  # phases of long and of short episodes
        actions = controller(obs, rng, flip)
        out = ref.step(actions)
        assert_same_step(out, rep.step(actions))
        obs = out[0]
        truncations += int(out[3].sum())
        terminations += int(out[2].sum())
    assert truncations > 0 and terminations > 0  # both kinds of episode end were compared


def test_reset_seed_forms_and_unseeded_resets_continue_each_generator() -> None:
    ref, rep = gymnasium_sync("CartPole-v1", 4), replica("CartPole-v1", 4)
    np.testing.assert_array_equal(ref.reset(seed=7)[0], rep.reset(seed=7)[0])  # int: env i gets 7 + i
    rng = np.random.default_rng(1)
    for _ in range(3):
        obs = np.zeros((4, 4), dtype=np.float32)
        for _ in range(200):
            actions = rng.integers(0, 2, 4)
            out = ref.step(actions)
            assert_same_step(out, rep.step(actions))
            obs = out[0]
        np.testing.assert_array_equal(ref.reset()[0], rep.reset()[0])  # None: each generator goes on
    assert obs.shape == (4, 4)


def test_a_pickled_replica_continues_identically() -> None:
    envs = replica("CartPole-v1", 5)
    envs.reset(seed=[1, 2, 3, 4, 5])
    rng = np.random.default_rng(2)
    for _ in range(300):
        envs.step(rng.integers(0, 2, 5))
    copy = pickle.loads(pickle.dumps(envs))
    for _ in range(300):
        actions = rng.integers(0, 2, 5)
        assert_same_step(envs.step(actions), copy.step(actions))


@pytest.mark.parametrize("n", [2, 40])  # the per-environment float loop, and the array operations
@pytest.mark.parametrize("pattern", [[0, 2], [-1, 0], [0.0, 1.0], [0, 1, 1]])
def test_invalid_actions_are_refused(n: int, pattern: list[float]) -> None:
    envs = BatchedCartPole(n)
    envs.reset(seed=0)
    actions = np.array(pattern * (n // 2)) if len(pattern) == 2 else np.array(pattern)  # wrong shape: 3 for n
    with pytest.raises(ValueError, match="CartPole actions"):
        envs.step(actions)


@pytest.mark.parametrize("n", [2, 40])
def test_boolean_actions_are_indices(n: int) -> None:
    ref, rep = gymnasium_sync("CartPole-v1", n), replica("CartPole-v1", n)
    ref.reset(seed=3), rep.reset(seed=3)
    assert_same_step(ref.step(np.arange(n) % 2), rep.step(np.arange(n) % 2 == 1))


def test_make_envs_picks_the_replica_where_one_exists() -> None:
    assert resolve_vectorization("CartPole-v1", "auto") == "batched"
    assert resolve_vectorization("Acrobot-v1", "auto") == "sync"
    envs, info = make_envs("CartPole-v1", 4)
    assert isinstance(envs.unwrapped, BatchedCartPole) and seeds_each_env(envs)
    assert not isinstance(envs, EpisodeStatistics)  # the replica records the statistics itself
    assert info.obs_dim == 4 and info.discrete and info.action_dim == 2 and info.max_episode_steps == 500
    sync, _ = make_envs("CartPole-v1", 4, "sync")
    assert isinstance(sync.unwrapped, gym.vector.SyncVectorEnv)
    with pytest.raises(PolicygradError, match="no batched replica"):
        make_envs("Acrobot-v1", 2, "batched")
