"""One shard of the vector environments: the piece of collection a rollout worker runs.

Nothing here imports Ray, so the sharding itself is tested (and usable) without it. Why
a shard's rollout equals the matching rows of the single-process rollout, bit for bit:

- env ``i`` is created and seeded exactly as in one process (``seed + i``), and every
  random draw is keyed by (seed, update, global env index), never by worker;
- the policy is evaluated on a full-width batch, the shard's observations at their global
  rows and zeros elsewhere (:class:`FullWidthAgent`): CPU matrix kernels pick their
  summation order from the batch size, so a smaller batch would round differently;
- episode statistics carry the vector step at which each episode ended, and are merged
  by (step, env) — the order in which one process records them
  (:func:`merge_episode_logs`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policygrad.agent import Agent
from policygrad.envs import EpisodeStatistics, flat_observations
from policygrad.rollout import Rollout, RolloutCollector

#: (vector step within the collection, episodic return, episode length), in recording order.
EpisodeRecord = tuple[int, float, int]


def shard_ranges(num_envs: int, workers: int) -> list[range]:
    """Split env indices 0..num_envs-1 into ``workers`` contiguous ranges, sizes differing by at most one."""
    if not 1 <= workers <= num_envs:
        raise ValueError(f"need 1 <= workers <= num_envs, got workers={workers}, num_envs={num_envs}")
    base, extra = divmod(num_envs, workers)
    out, start = [], 0
    for k in range(workers):
        size = base + (1 if k < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


class EnvFailure(Exception):
    """An exception raised inside one environment, tagged with its global env index."""

    def __init__(self, env_index: int, phase: str, error: BaseException) -> None:
        super().__init__(f"env {env_index} raised {type(error).__name__} in {phase}(): {error}")
        self.env_index = env_index
        self.phase = phase
        self.error_type = type(error).__name__
        self.error_message = str(error)


class GuardedEnv(gym.Wrapper):
    """Passes everything through; an exception from ``step``/``reset`` becomes :class:`EnvFailure`."""

    def __init__(self, env: gym.Env, env_index: int) -> None:
        super().__init__(env)
        self.env_index = env_index

    def step(self, action: Any) -> Any:
        try:
            return self.env.step(action)
        except EnvFailure:
            raise
        except Exception as err:  # noqa: BLE001 - any error of the user's env is reported with its index
            raise EnvFailure(self.env_index, "step", err) from err

    def reset(self, **kwargs: Any) -> Any:
        try:
            return self.env.reset(**kwargs)
        except Exception as err:  # noqa: BLE001
            raise EnvFailure(self.env_index, "reset", err) from err


def _make_guarded(env_id: str, env_index: int) -> gym.Env:
    return GuardedEnv(gym.make(env_id), env_index)


def make_shard_envs(env_id: str, env_indices: Sequence[int]) -> gym.vector.VectorEnv:
    """The vector env of a shard: what :func:`policygrad.envs.make_envs` builds for these indices.

    Same per-env construction (``gym.make``), NEXT_STEP autoreset and episode statistics;
    each env is wrapped in :class:`GuardedEnv` so a failure names its global index.
    Normalisation wrappers are not supported on shards (their statistics would be per shard).
    """
    # functools.partial (not a lambda) keeps the shard picklable for checkpoints and restarts.
    fns = [functools.partial(_make_guarded, env_id, i) for i in env_indices]
    envs = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    return EpisodeStatistics(flat_observations(envs))  # Dict, images, …: one flat vector, as make_envs


class FullWidthAgent:
    """An agent seen through a shard: evaluates the full (num_envs) batch, returns the shard's rows.

    The shard's inputs sit at their global rows, zeros elsewhere, so every row goes through
    the same kernels with the same batch shape as in one process and comes out bit-identical.
    The cost is a forward pass over ``num_envs`` rows per worker: negligible next to the
    environment steps for MLP policies.
    """

    def __init__(self, agent: Agent, env_indices: Sequence[int], num_envs: int, sampler: Any = None) -> None:
        self.agent = agent
        self.sampler = sampler  # the learner's fused rollout forward (policygrad.kernels), or None
        self.rows = slice(env_indices[0], env_indices[-1] + 1)
        if list(env_indices) != list(range(self.rows.start, self.rows.stop)):
            raise ValueError("a shard must be a contiguous range of env indices")
        self.num_envs = num_envs

    @property
    def spec(self) -> Any:
        return self.agent.spec

    @property
    def critic(self) -> Any:
        return self.agent.critic

    @property
    def recurrent(self) -> bool:
        """Whether the agent carries a state (policy=lstm): the shard's collector then carries its rows of it."""
        return self.agent.recurrent

    def _widen(self, x: torch.Tensor) -> torch.Tensor:
        full = x.new_zeros((self.num_envs, *x.shape[1:]))
        full[self.rows] = x
        return full

    def sample(
        self, obs: torch.Tensor, noise: torch.Tensor, action_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        fused = self.sampler.ready() if self.sampler is not None else None
        if fused is not None:
            actions, log_probs, values = fused.sample(self._widen(obs), self._widen(noise))
        elif action_mask is not None:  # the other rows' masks are all False: padding, never read
            actions, log_probs, values = self.agent.sample(
                self._widen(obs), self._widen(noise), self._widen(action_mask)
            )
        else:
            actions, log_probs, values = self.agent.sample(self._widen(obs), self._widen(noise))
        return actions[self.rows], log_probs[self.rows], None if values is None else values[self.rows]

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.agent.value(self._widen(obs))[self.rows]

    # The recurrent step (policy=lstm): the shard's states and episode starts widened like its observations
    # (zeros and False elsewhere), so the LSTM cells run on the full batch, as in one process.
    def initial_state(self, batch: int) -> torch.Tensor:
        return self.agent.initial_state(batch)

    def step(
        self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        wide_starts = None if starts is None else self._widen(starts)
        out, values, state = self.agent.step(self._widen(obs), self._widen(state), wide_starts)
        return out[self.rows], None if values is None else values[self.rows], state[self.rows]

    def sample_step(
        self,
        obs: torch.Tensor,
        noise: torch.Tensor,
        state: torch.Tensor,
        starts: torch.Tensor | None,
        action_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        wide_mask = None if action_mask is None else self._widen(action_mask)
        wide_starts = None if starts is None else self._widen(starts)
        actions, log_probs, values, state = self.agent.sample_step(
            self._widen(obs), self._widen(noise), self._widen(state), wide_starts, wide_mask
        )
        rows = self.rows
        return actions[rows], log_probs[rows], None if values is None else values[rows], state[rows]

    def to_env_actions(self, actions: torch.Tensor) -> np.ndarray:
        return self.agent.to_env_actions(actions)


class ShardCollector(RolloutCollector):
    """A :class:`RolloutCollector` over one contiguous shard that also logs when episodes end.

    ``episode_log`` holds, for the last collection, one :data:`EpisodeRecord` per finished
    episode, in the order the collector recorded them (by step, then env).
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        agent: Agent,
        seed: int,
        env_indices: Sequence[int],
        num_envs: int,
        sampler: Any = None,
    ) -> None:
        full_width = FullWidthAgent(agent, env_indices, num_envs, sampler)
        super().__init__(envs, full_width, seed, env_indices)  # type: ignore[arg-type]
        self.episode_log: list[EpisodeRecord] = []
        self._step = 0

    def collect(self, steps: int, update: int) -> Rollout:
        self.episode_log, self._step = [], 0
        return super().collect(steps, update)

    def collect_episodes(self, max_steps: int, update: int) -> Rollout:
        self.episode_log, self._step = [], 0
        return super().collect_episodes(max_steps, update)

    def _record_episodes(self, info: dict[str, Any], valid: np.ndarray) -> None:
        # Let the parent choose which episodes count, into fresh lists, and tag them with the step.
        kept = self.recent_returns, self.recent_lengths
        self.recent_returns, self.recent_lengths = [], []  # type: ignore[assignment]
        try:
            super()._record_episodes(info, valid)
            ended = zip(self.recent_returns, self.recent_lengths, strict=True)
            self.episode_log.extend((self._step, r, n) for r, n in ended)
        finally:
            self.recent_returns, self.recent_lengths = kept
        self._step += 1


def merge_episode_logs(logs: Sequence[Sequence[EpisodeRecord]]) -> list[tuple[float, int]]:
    """(return, length) of every episode of the shards, in the order one process records them.

    ``logs`` are the shards' logs in env order; one process records by step, then env index,
    so a stable sort on the step of the concatenated logs reproduces it.
    """
    tagged = [record for log in logs for record in log]
    tagged.sort(key=lambda record: record[0])  # stable: shards (and envs within one) stay in env order
    return [(r, n) for _, r, n in tagged]


def pad_steps(rollout: Rollout, steps: int) -> Rollout:
    """Extend a rollout to ``steps`` steps with zero padding (mask False)."""
    missing = steps - rollout.rewards.shape[1]
    if missing <= 0:
        return rollout
    out = {}
    for f in fields(Rollout):
        tensor = getattr(rollout, f.name)
        if tensor is None or f.name == "initial_state":  # the state is per env, not per step
            out[f.name] = tensor
            continue
        pad = tensor.new_zeros((tensor.shape[0], missing, *tensor.shape[2:]))
        out[f.name] = torch.cat([tensor, pad], dim=1)
    return Rollout(**out)
