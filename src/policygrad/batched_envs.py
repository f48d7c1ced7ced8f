"""Numpy-batched replicas of Gymnasium environments, step for step identical to SyncVectorEnv.

Why: Gymnasium's ``SyncVectorEnv`` steps each environment through its Python wrappers
(TimeLimit, OrderEnforcing, the passive checker) one at a time, about 18 µs per CartPole
step on this project's reference CPU — a third of an A2C update's time at 8 envs × 5
steps. A replica computes the same float64 physics for all environments in one set of
array operations (or, for a few environments, one loop over Python floats).

The contract, checked by ``tests/test_batched_envs.py`` over thousands of steps with
a noisy balancing policy, resets, terminations and truncations: for the same seeds, a replica
returns exactly (bit for bit) the observations, rewards, terminations and truncations
of ``SyncVectorEnv([gym.make(env_id)] * N, autoreset_mode=NEXT_STEP)``. Each environment
keeps its own random generator, seeded as ``gym.make(env_id).reset(seed=s)`` seeds it, so a
rollout does not depend on how the environments are split across processes (unlike
Gymnasium's native CartPole vector env, whose environments share one generator).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

#: Gymnasium's entry point of each environment a replica serves.
CARTPOLE_ENTRY_POINT = "gymnasium.envs.classic_control.cartpole:CartPoleEnv"
#: Up to this many environments, the dynamics run per environment on Python floats (a numpy op
#: costs about a microsecond whatever its size, so 30 of them outweigh 8 environments' floats).
SCALAR_MAX_ENVS = 16

# The constants of gymnasium.envs.classic_control.cartpole.CartPoleEnv.
GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD_RADIANS = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4


def cartpole_dynamics(x: Any, x_dot: Any, theta: Any, theta_dot: Any, force: Any, cos: Any, sin: Any) -> tuple:
    """One Euler step of CartPoleEnv.step's float64 arithmetic, operation for operation.

    On floats (one environment, ``math.cos``) or on arrays (every environment, ``np.cos``):
    both give Gymnasium's results bit for bit (``θ̇·θ̇`` is what ``np.square`` computes).
    """
    costheta = cos(theta)
    sintheta = sin(theta)
    temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS
    thetaacc = (GRAVITY * sintheta - costheta * temp) / (
        LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS)
    )
    xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
    return x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot, theta_dot + TAU * thetaacc


class BatchedCartPole(gym.vector.VectorEnv):
    """N CartPole environments (``CartPole-v1`` or ``-v0``) stepped together: one set of float64 array
    operations, or up to :data:`SCALAR_MAX_ENVS` environments one loop over Python floats.

    NEXT_STEP autoreset: the step after an episode ends resets that environment (its
    action is ignored; reward 0, neither terminated nor truncated), as ``SyncVectorEnv``
    does by default. Records the episode statistics :class:`policygrad.envs.EpisodeStatistics`
    would (``info["episode"]``, ``info["_episode"]``) at almost no cost, so it is not wrapped in it.
    """

    records_episode_statistics = True

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int, max_episode_steps: int = 500) -> None:
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        high = np.array(
            [X_THRESHOLD * 2, np.inf, THETA_THRESHOLD_RADIANS * 2, np.inf],
            dtype=np.float32,
        )
        self.single_observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.generators: list[np.random.Generator | None] = [None] * num_envs
        self.state = np.zeros((4, num_envs))  # x, ẋ, θ, θ̇ as rows
        self.elapsed = np.zeros(num_envs, dtype=np.int64)
        self.autoreset = np.zeros(num_envs, dtype=bool)
        self.forces = np.array([-FORCE_MAG, FORCE_MAG])
        self.ones = np.ones(num_envs)

    def _generator(self, i: int) -> np.random.Generator:
        if self.generators[i] is None:  # as Env.np_random: an unseeded env draws a random seed once
            self.generators[i], _ = seeding.np_random()
        return self.generators[i]

    def _reset_env(self, i: int, seed: int | None) -> None:
        if seed is not None:
            self.generators[i], _ = seeding.np_random(seed)
        self.state[:, i] = self._generator(i).uniform(low=-0.05, high=0.05, size=(4,))
        self.elapsed[i] = 0

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every environment: ``seed`` None (keep each generator), an int s (env i gets s + i) or one per env."""
        if options:
            raise ValueError(f"{type(self).__name__}.reset takes no options (got {sorted(options)})")
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"{len(seeds)} seeds for {self.num_envs} environments")
        for i, s in enumerate(seeds):
            self._reset_env(i, s)
        self.autoreset[:] = False
        return self.state.T.astype(np.float32), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iub":
            raise ValueError(f"CartPole actions must be {self.num_envs} integers in {{0, 1}}, got {actions!r}")
        if self.num_envs <= SCALAR_MAX_ENVS:
            state, terminated = self._step_floats(actions)
        else:
            state, terminated = self._step_arrays(actions)
        self.state = state
        # Every step is worth 1 and a reset step zeroes the count, so the episode's length and
        # return are both ``elapsed``: no separate statistics to keep.
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps
        rewards = self.ones.copy()
        resetting = self.autoreset
        if np.count_nonzero(resetting):  # NEXT_STEP autoreset: these envs reset instead of stepping
            for i in np.flatnonzero(resetting):
                self._reset_env(i, None)  # elapsed 0: a reset step counts towards no episode
            rewards[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
        self.autoreset = done = terminated | truncated
        info: dict[str, Any] = {}
        if np.count_nonzero(done):  # as EpisodeStatistics reports them
            info["episode"] = {"r": np.where(done, self.elapsed, 0.0), "l": np.where(done, self.elapsed, 0)}
            info["_episode"] = done
        return state.T.astype(np.float32), rewards, terminated, truncated, info

    def _step_floats(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The dynamics and terminations one environment at a time, on Python floats."""
        chosen = actions.tolist()
        if not {0, 1}.issuperset(chosen):  # True and False are 1 and 0 here
            raise ValueError(f"CartPole actions must be 0 or 1, got {actions!r}")
        forces = [FORCE_MAG if a else -FORCE_MAG for a in chosen]
        rows = [
            cartpole_dynamics(x, x_dot, theta, theta_dot, force, math.cos, math.sin)
            for x, x_dot, theta, theta_dot, force in zip(*self.state.tolist(), forces, strict=True)
        ]
        # x < −x̄ or x > x̄ is |x| > x̄ exactly (negation is exact), and likewise for θ.
        terminated = [abs(row[0]) > X_THRESHOLD or abs(row[2]) > THETA_THRESHOLD_RADIANS for row in rows]
        return np.array(rows).T, np.array(terminated)

    def _step_arrays(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The dynamics and terminations of every environment as float64 array operations."""
        if actions.dtype.kind == "b":  # an index, not a mask
            actions = actions.view(np.uint8)
        elif np.count_nonzero(actions >> 1):  # anything but 0 and 1, negatives included
            raise ValueError(f"CartPole actions must be 0 or 1, got {actions!r}")
        state = np.stack(cartpole_dynamics(*self.state, self.forces[actions], np.cos, np.sin))
        terminated = np.abs(state[0]) > X_THRESHOLD
        terminated |= np.abs(state[2]) > THETA_THRESHOLD_RADIANS
        return state, terminated

    def __repr__(self) -> str:
        return f"BatchedCartPole(num_envs={self.num_envs}, max_episode_steps={self.max_episode_steps})"


def replica(env_id: str, num_envs: int) -> gym.vector.VectorEnv | None:
    """A batched replica of ``num_envs`` × ``gym.make(env_id)``, or None where there is none."""
    if not has_replica(env_id):
        return None
    spec = gym.spec(env_id)
    envs = BatchedCartPole(num_envs, spec.max_episode_steps)
    envs.spec = spec
    return envs


def has_replica(env_id: str) -> bool:
    """Whether :func:`replica` serves ``env_id``."""
    spec = gym.spec(env_id)
    plain = not spec.kwargs and not spec.additional_wrappers  # the replica has neither kwargs nor wrappers
    return spec.entry_point == CARTPOLE_ENTRY_POINT and plain and bool(spec.max_episode_steps)
