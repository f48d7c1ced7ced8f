"""Vector environments (Gymnasium): creation, validation, normalisation and saved state.

Every vector env here autoresets in NEXT_STEP mode (Gymnasium's default, and the only
mode of its native CartPole): the step after an episode ends is a reset step whose
action is ignored. The rollout masks those steps out and reads the true final
observation of a truncated episode from the step that ended it.

Wrapper stack, innermost first: the vector env → :class:`EpisodeStatistics` (raw episodic
returns; a batched replica records them itself) → NormalizeObservation → NormalizeReward
(both optional; with ``clip_obs`` / ``clip_reward`` the clipping subclasses below, as
Stable-Baselines3's ``VecNormalize`` clips at ±10).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import vector as vector_wrappers

from policygrad import batched_envs, env_source, spaces
from policygrad.errors import PolicygradError

VECTORIZATIONS = ("auto", "batched", "native", "sync", "async")


class EpisodeStatistics(gym.vector.VectorWrapper):
    """Raw episodic returns and lengths of a NEXT_STEP vector env, in ``info["episode"]``.

    The same ``info["episode"]["r"|"l"]`` and ``info["_episode"]`` as Gymnasium's
    ``RecordEpisodeStatistics`` (tested equal), without its wall-clock times and queues:
    four array operations per step instead of about fifteen, which is a third of an
    8-env CartPole step's cost. A reset step (the step after an episode ended) counts
    towards no episode.
    """

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        self.episode_returns = np.zeros(self.num_envs)
        self.episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self.prev_dones = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode_returns = np.zeros(self.num_envs)
        self.episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self.prev_dones = np.zeros(self.num_envs, dtype=bool)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        counting = ~self.prev_dones
        self.episode_returns = np.where(counting, self.episode_returns + rewards, 0.0)
        self.episode_lengths = np.where(counting, self.episode_lengths + 1, 0)
        self.prev_dones = dones = terminations | truncations
        if dones.any():
            infos["episode"] = {
                "r": np.where(dones, self.episode_returns, 0.0),
                "l": np.where(dones, self.episode_lengths, 0),
            }
            infos["_episode"] = dones
        return obs, rewards, terminations, truncations, infos


class ClippedNormalizeObservation(vector_wrappers.NormalizeObservation):
    """Gymnasium's ``NormalizeObservation``, its output clipped to ±``clip`` (SB3 ``VecNormalize``'s ``clip_obs``).

    A subclass, not a ``TransformObservation`` over it: its one extra attribute is a number, so
    the checkpoint saves the stack as data (:mod:`policygrad.env_state`).
    """

    def __init__(self, env: gym.vector.VectorEnv, clip: float) -> None:
        super().__init__(env)
        self.clip = float(clip)

    def observations(self, observations: np.ndarray) -> np.ndarray:
        return np.clip(super().observations(observations), -self.clip, self.clip)


class ClippedNormalizeReward(vector_wrappers.NormalizeReward):
    """Gymnasium's ``NormalizeReward``, the scaled reward clipped to ±``clip`` (SB3 ``VecNormalize``'s ``clip_reward``).

    The running statistics see the raw rewards, as in both libraries; only what the learner gets is clipped.
    """

    def __init__(self, env: gym.vector.VectorEnv, clip: float, gamma: float) -> None:
        super().__init__(env, gamma=gamma)
        self.clip = float(clip)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, info = super().step(actions)
        return obs, np.clip(rewards, -self.clip, self.clip), terminated, truncated, info


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The spec of ``env_id`` (registered here, or ``module:EnvId``), or a clear error suggesting close names."""
    return gym.spec(env_source.resolve(env_id))


@dataclass(frozen=True)
class EnvInfo:
    """What the agent needs to know about an environment's spaces (see :mod:`policygrad.spaces`)."""

    obs_dim: int
    discrete: bool
    action_dim: int
    action_low: tuple[float, ...] | None
    action_high: tuple[float, ...] | None
    max_episode_steps: int | None
    action_kind: str = "discrete"
    action_nvec: tuple[int, ...] | None = None
    action_start: tuple[int, ...] | None = None
    #: The observation space as JSON when the policy sees it flattened (None: a flat Box, as it is).
    observation_space: dict[str, Any] | None = None


def describe_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> EnvInfo:
    """Validate the single-env spaces and summarise them, with clear errors."""
    refusal = spaces.observation_refusal(observation_space)
    if refusal is not None:
        raise PolicygradError(f"{env_id}: {refusal}")
    action = spaces.describe_action_space(env_id, action_space)
    flat = spaces.is_flat_vector(observation_space)
    start = action.get("start")
    return EnvInfo(
        obs_dim=int(gym.spaces.flatdim(observation_space)),
        discrete=action["kind"] == "discrete",
        action_dim=action["action_dim"],
        action_low=action.get("low"),
        action_high=action.get("high"),
        max_episode_steps=gym.spec(env_id).max_episode_steps,
        action_kind=action["kind"],
        action_nvec=action.get("nvec"),
        action_start=start if start is not None and any(start) else None,
        observation_space=None if flat else spaces.to_json(observation_space),
    )


def provides_action_masks(env_id: str) -> bool:
    """Whether the env reports which actions are allowed: ``info["action_mask"]`` or an ``action_masks()`` method.

    The two conventions of sb3-contrib's MaskablePPO users; probed on one env, reset once.
    """
    env = gym.make(env_id)
    try:
        _, info = env.reset(seed=0)
        return "action_mask" in info or callable(getattr(env.unwrapped, "action_masks", None))
    finally:
        env.close()


def action_masks(envs: gym.vector.VectorEnv, info: dict[str, Any], width: int) -> np.ndarray:
    """The allowed actions (N, width) bool after a reset or step; every action where an env gave no mask."""
    allowed = np.ones((envs.num_envs, width), dtype=bool)
    if "action_mask" in info:
        given = info.get("_action_mask", np.ones(envs.num_envs, dtype=bool))
        for i in np.flatnonzero(given):
            allowed[i] = np.asarray(info["action_mask"][i], dtype=bool).reshape(-1)
    else:
        for i, mask in enumerate(envs.unwrapped.call("action_masks")):
            allowed[i] = np.asarray(mask, dtype=bool).reshape(-1)
    empty = np.flatnonzero(~allowed.any(-1))
    if empty.size:
        raise PolicygradError(f"env {int(empty[0])} allows no action at all (its action mask is all False)")
    return allowed


def flat_observations(envs: gym.vector.VectorEnv) -> gym.vector.VectorEnv:
    """``envs`` with observations flattened to one float vector each, where they are not already (Dict, …)."""
    if spaces.is_flat_vector(envs.single_observation_space):
        return envs
    return vector_wrappers.FlattenObservation(envs)


def resolve_vectorization(env_id: str, vectorization: str) -> str:
    """'auto' is batched where policygrad has a replica of the env (CartPole), else sync.

    Both keep one random generator per env index, env i seeded ``seed + i``, which makes a
    rollout independent of how the environments are split across processes or machines;
    a batched replica (:mod:`policygrad.batched_envs`) steps exactly as sync does, several
    times faster. Gymnasium's native vector envs (CartPole) share one random generator
    across all their envs, so they are opt-in (``native``).
    """
    if vectorization == "auto":
        return "batched" if batched_envs.has_replica(env_id) else "sync"
    if vectorization == "batched" and not batched_envs.has_replica(env_id):
        raise PolicygradError(f"{env_id} has no batched replica in policygrad; use vectorization=sync or async")
    if vectorization == "native" and gym.spec(env_id).vector_entry_point is None:
        raise PolicygradError(f"{env_id} has no native vector implementation; use vectorization=sync or async")
    return vectorization


def seeds_each_env(envs: gym.vector.VectorEnv) -> bool:
    """Whether ``envs`` keeps one random generator per env (sync, async, batched), not one shared (native)."""
    inner = envs.unwrapped
    return isinstance(inner, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv, batched_envs.BatchedCartPole))


def make_envs(
    env_id: str,
    num_envs: int,
    vectorization: str = "auto",
    *,
    gamma: float = 0.99,
    normalize_obs: bool = False,
    normalize_reward: bool = False,
    clip_obs: float | None = None,
    clip_reward: float | None = None,
) -> tuple[gym.vector.VectorEnv, EnvInfo]:
    """Create the wrapped vector environment for training and describe its spaces.

    ``clip_obs`` / ``clip_reward`` clip the normalised observations / rewards (None: not clipped).
    """
    spec = check_env_id(env_id)
    mode = resolve_vectorization(env_id, vectorization)
    try:
        if mode == "batched":
            envs = batched_envs.replica(env_id, num_envs)
        elif mode == "native":
            envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
        else:
            # functools.partial (not a lambda) keeps a sync vector env picklable for exact resume.
            fns = [functools.partial(gym.make, env_id) for _ in range(num_envs)]
            if mode == "sync":
                envs = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
            else:
                envs = gym.vector.AsyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    except gym.error.DependencyNotInstalled as err:
        extra = env_source.extra_for(env_id)
        how = f' (pip install "policygrad[{extra}]")' if extra else ""
        raise PolicygradError(f"{env_id} needs an extra package: {str(err).splitlines()[0]}{how}") from None
    except gym.error.Error as err:
        raise PolicygradError(f"could not create {env_id}: {err}") from None
    info = describe_spaces(spec.id, envs.single_observation_space, envs.single_action_space)
    if normalize_obs and spaces.has_images(envs.single_observation_space):
        envs.close()
        raise PolicygradError(
            f"{env_id}: normalize_obs would rescale image pixels, which the CNN encoder already scales by 1/255; "
            "drop --set normalize_obs=true (or normalise the vector parts in a wrapper of your env)"
        )
    envs = flat_observations(envs)
    if not getattr(envs, "records_episode_statistics", False):
        envs = EpisodeStatistics(envs)
    if normalize_obs:
        envs = (
            vector_wrappers.NormalizeObservation(envs)
            if clip_obs is None
            else ClippedNormalizeObservation(envs, clip_obs)
        )
    if normalize_reward:
        envs = (
            vector_wrappers.NormalizeReward(envs, gamma=gamma)
            if clip_reward is None
            else ClippedNormalizeReward(envs, clip_reward, gamma)
        )
    return envs, info


def reset_seeds(vectorization: str, seed: int, num_envs: int) -> int | list[int]:
    """Seeds for the first reset: one per env (env i gets seed + i), one for a native env."""
    return seed if vectorization == "native" else [seed + i for i in range(num_envs)]


def _find_wrapper(envs: gym.vector.VectorEnv, cls: type) -> Any:
    env = envs
    while True:
        if isinstance(env, cls):
            return env
        if not hasattr(env, "env"):
            return None
        env = env.env


def normalizer_state(envs: gym.vector.VectorEnv) -> dict[str, Any]:
    """The normalisers' running statistics as JSON-ready lists (empty when not normalising)."""
    out: dict[str, Any] = {}
    obs = _find_wrapper(envs, vector_wrappers.NormalizeObservation)
    if obs is not None:
        rms = obs.obs_rms
        out["obs"] = {"mean": rms.mean.tolist(), "var": rms.var.tolist(), "count": float(rms.count)}
    rew = _find_wrapper(envs, vector_wrappers.NormalizeReward)
    if rew is not None:
        rms = rew.return_rms
        out["reward"] = {
            "mean": float(np.asarray(rms.mean).item()),
            "var": float(np.asarray(rms.var).item()),
            "count": float(rms.count),
            "accumulated_reward": np.asarray(rew.accumulated_reward).tolist(),
        }
    return out


def load_normalizer_state(envs: gym.vector.VectorEnv, state: dict[str, Any]) -> None:
    """Restore statistics saved by :func:`normalizer_state` into fresh wrappers."""
    obs = _find_wrapper(envs, vector_wrappers.NormalizeObservation)
    if obs is not None and "obs" in state:
        obs.obs_rms.mean = np.asarray(state["obs"]["mean"], dtype=np.float64)
        obs.obs_rms.var = np.asarray(state["obs"]["var"], dtype=np.float64)
        obs.obs_rms.count = state["obs"]["count"]
    rew = _find_wrapper(envs, vector_wrappers.NormalizeReward)
    if rew is not None and "reward" in state:
        rew.return_rms.mean = np.float64(state["reward"]["mean"])
        rew.return_rms.var = np.float64(state["reward"]["var"])
        rew.return_rms.count = state["reward"]["count"]
        rew.accumulated_reward = np.asarray(state["reward"]["accumulated_reward"], dtype=np.float64)
