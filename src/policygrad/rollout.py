"""The Rollout tensors, and collecting them from vector environments.

One Rollout type serves every source (Gymnasium vector envs, token sequences, remote
workers): tensors of shape (N, T, ...) with N environments or sequences and T steps or
tokens, plus a validity ``mask``. Concatenating shards along N in env order gives the
rollout a single process would have collected, because every random draw is keyed by
(seed, update, global env index) — see :func:`action_noise`.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policygrad import envs as envs_lib
from policygrad import heads
from policygrad.agent import Agent
from policygrad.seeding import Stream, seed_of_key, stream_seed


@dataclass
class Rollout:
    """A batch of experience, shape (N, T, ...).

    ============  ==============  =====================================================
    field         shape           meaning
    ============  ==============  =====================================================
    observations  (N, T, obs)     observation the action was taken in
    actions       (N, T[, act])   action taken (unclipped for boxes)
    log_probs     (N, T)          log π(a|s) at collection time
    values        (N, T)          V(s) at collection time (zeros without a critic)
    rewards       (N, T)          reward after the action
    terminated    (N, T) bool     the MDP ended at this step: no bootstrap
    truncated     (N, T) bool     time limit or rollout cut: bootstrap from V(final obs)
    mask          (N, T) bool     the step is real (False: a reset step or padding)
    next_values   (N, T)          V of the observation after the step; for a truncated
                                  step, V(true final observation)
    action_masks  (N, T, width)   bool, the actions the env allowed (None: no mask)
    initial_state (N, rows, H)    a recurrent agent's state before step 0 (None: MLP)
    episode_starts (N, T)         bool, the step's observation begins an episode: the
                                  recurrent state is zeroed before it (None: MLP)
    ============  ==============  =====================================================

    A recurrent agent's update replays each env's T steps from ``initial_state``
    (:mod:`policygrad.recurrent`); with minibatches of whole sequences that is the only
    state it needs, so the per-step states are not kept.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    mask: torch.Tensor
    next_values: torch.Tensor
    # keyword-only, so that subclasses (token rollouts) add required fields after it
    action_masks: torch.Tensor | None = field(default=None, kw_only=True)
    initial_state: torch.Tensor | None = field(default=None, kw_only=True)
    episode_starts: torch.Tensor | None = field(default=None, kw_only=True)

    @property
    def done(self) -> torch.Tensor:
        """Episode boundary: terminated or truncated. (N, T) bool."""
        return self.terminated | self.truncated

    @property
    def num_envs(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_steps(self) -> int:
        """Number of real (unmasked) transitions."""
        return int(torch.count_nonzero(self.mask))

    def flat(self, name: str) -> torch.Tensor:
        """A field with (N, T) merged into one batch dimension."""
        tensor = getattr(self, name)
        return None if tensor is None else tensor.reshape(-1, *tensor.shape[2:])

    @staticmethod
    def concat(shards: Sequence[Rollout]) -> Rollout:
        """Join shards collected on disjoint env ranges, in env order, along N."""

        def joined(name: str) -> torch.Tensor | None:
            parts = [getattr(s, name) for s in shards]
            return None if parts[0] is None else torch.cat(parts)

        return Rollout(**{f.name: joined(f.name) for f in fields(Rollout)})


def action_noise(
    seed: int, update: int, env_indices: Sequence[int], steps: int, shape: tuple[int, ...], normal: bool
) -> torch.Tensor:
    """Pre-drawn sampling noise (N, T, *shape): standard normals if ``normal``, else uniforms in [0, 1).

    ``shape`` and ``normal`` per action come from :func:`policygrad.heads.noise_shape`: () uniforms
    for Discrete, (K,) uniforms for MultiDiscrete and MultiBinary, (action_dim,) normals for Box.

    Keyed by (seed, update, global env index), never by process or worker, so any split
    of the environments across workers draws the same actions.
    """
    # stream_seed(seed, Stream.ACTION_NOISE, update, env_index), with the shared part of the key formatted once;
    # one generator, re-seeded per env: this runs every update.
    prefix, generator, out = f"{seed}/{int(Stream.ACTION_NOISE)}/{update}/", torch.Generator(), []
    for env_index in env_indices:
        generator.manual_seed(seed_of_key(f"{prefix}{env_index}"))
        draw = torch.randn if normal else torch.rand
        out.append(draw(steps, *shape, generator=generator))
    return torch.stack(out)


def _zero_padding(rollout: Rollout) -> Rollout:
    """The rollout with every field zeroed where ``mask`` is False (padding carries no data)."""
    padding = ~rollout.mask
    out = {}
    for f in fields(Rollout):
        tensor = getattr(rollout, f.name)
        if tensor is not None and f.name not in ("mask", "initial_state"):  # the state is per env, not per step
            tensor = tensor.masked_fill(padding.reshape(*padding.shape, *(1,) * (tensor.dim() - 2)), 0)
        out[f.name] = tensor
    return Rollout(**out)


class RolloutCollector:
    """Steps a vector env with an agent and returns Rollouts.

    Two modes: ``collect(steps)`` continues the running episodes for a fixed number of
    vector steps (Actor-Critic, A2C, PPO); ``collect_episodes(max_steps)`` resets every
    env and plays exactly one complete episode per env (REINFORCE and its baseline).
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        agent: Agent,
        seed: int,
        env_indices: Sequence[int] | None = None,
        return_window: int = 20,
        sampler: Any = None,
    ) -> None:
        self.envs = envs
        self.agent = agent
        #: A kernel's fused policy forward (:func:`policygrad.kernels.rollout_sampler`), or None: ``agent.sample``.
        self.sampler = sampler
        #: The actions each env allows now (N, width) bool, where the agent uses the env's action masks.
        self.action_mask: np.ndarray | None = None
        self.seed = seed
        self.num_envs = envs.num_envs
        self.env_indices = list(env_indices) if env_indices is not None else list(range(self.num_envs))
        self.obs: np.ndarray | None = None
        self.prev_done = np.zeros(self.num_envs, dtype=bool)
        #: A recurrent agent's state (N, rows, H), carried from rollout to rollout, and which envs start an episode
        #: at the next step (policygrad.recurrent); None for an MLP agent.
        self.memory = agent.initial_state(self.num_envs).numpy() if agent.recurrent else None
        self.episode_start = np.ones(self.num_envs, dtype=bool)
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=return_window)
        self.recent_lengths: collections.deque[int] = collections.deque(maxlen=return_window)

    def reset(self, seed: int | list[int] | None) -> None:
        obs, info = self.envs.reset(seed=seed)
        self.obs = np.asarray(obs, dtype=np.float32)
        self.action_mask = self._masks(info)
        self.prev_done[:] = False
        self.episode_start[:] = True
        if self.memory is not None:
            # The next step begins every episode and zeroes the state anyway; zeroing it here also makes the
            # Rollout.initial_state after a reset the same however the envs are split across Ray workers.
            self.memory = self.agent.initial_state(self.num_envs).numpy()

    # ----- collection ------------------------------------------------------------------
    def collect(self, steps: int, update: int) -> Rollout:
        """``steps`` vector steps continuing the running episodes."""
        if self.obs is None:
            raise RuntimeError("call reset() before collect()")
        return self._run(steps, update, episodes=False)

    def collect_episodes(self, max_steps: int, update: int) -> Rollout:
        """Reset, then one complete episode per env (cut at ``max_steps``, as truncation).

        Each env is reset with a seed keyed by (seed, update, global env index) and its steps
        after its episode are zero padding (mask False), so an env's episode depends on
        nothing but that env: any split of the envs across workers gives the same rollout.
        """
        if envs_lib.seeds_each_env(self.envs):
            self.reset([stream_seed(self.seed, Stream.EPISODE_RESETS, update, i) for i in self.env_indices])
        else:  # a native vector env has one generator for all its envs
            self.reset(stream_seed(self.seed, Stream.EPISODE_RESETS, update))
        return _zero_padding(self._run(max_steps, update, episodes=True))

    def _run(self, steps: int, update: int, episodes: bool) -> Rollout:
        agent, envs, n = self.agent, self.envs, self.num_envs
        spec = agent.spec
        shape, normal = heads.noise_shape(spec.kind, spec.action_dim, spec.action_nvec)
        noise = action_noise(self.seed, update, self.env_indices, steps, shape, normal)
        # The agent does not change during a rollout: ready the fused forward once (the same
        # numbers as agent.sample, without re-checking the agent at every step).
        fused = self.sampler.ready() if self.sampler is not None else None
        action_shape, action_dtype = shape, (np.float32 if spec.kind == "box" else np.int64)
        critic = agent.critic is not None
        if fused is not None and spec.kind == "discrete":
            noise = noise.unsqueeze(-1)  # (N, T, 1): the (B, 1) uniforms FusedAgent.draw takes
        # (T, N, ...) then one tensor per step: indexing a Python list is free, a tensor's is not.
        noise = noise.transpose(0, 1).contiguous().unbind(0)

        def policy_step(obs: torch.Tensor, u: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            """Actions, log-probs and values (or None) as numpy arrays (B, ...), (B,), (B,)."""
            if fused is None:
                allowed = None if self.action_mask is None else torch.from_numpy(self.action_mask)
                actions, log_probs, values = agent.sample(obs, u, allowed)
                return actions.numpy(), log_probs.numpy(), None if values is None else values.numpy()
            actions, log_probs, out = fused.draw(obs, u)
            out_np = out.numpy()
            values_np = out_np[:, spec.action_dim] if critic else None
            return actions.numpy().reshape(n, *action_shape), log_probs.numpy().reshape(n), values_np

        def bootstrap_values(obs: torch.Tensor) -> torch.Tensor:
            return fused.values(obs) if fused is not None else agent.sample(obs, torch.zeros_like(noise[0]))[2]

        recurrent = self.memory is not None
        if recurrent:  # the same two functions for a recurrent agent, which steps with its state
            initial_state = torch.from_numpy(self.memory.copy())
            episode_starts = np.zeros((n, steps), dtype=bool)

            def policy_step(obs: torch.Tensor, u: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
                # an env whose previous step was a reset step (prev_done) begins an episode at the next
                t, starts = len(started), self.episode_start
                allowed = None if self.action_mask is None else torch.from_numpy(self.action_mask)
                state = torch.from_numpy(self.memory)
                actions, log_probs, values, state = agent.sample_step(obs, u, state, torch.from_numpy(starts), allowed)
                episode_starts[:, t], self.memory, self.episode_start = starts, state.numpy(), prev_done.copy()
                started.append(t)
                return actions.numpy(), log_probs.numpy(), None if values is None else values.numpy()

            def bootstrap_values(obs: torch.Tensor) -> torch.Tensor:  # V(s_T), the state left as it is
                return agent.step(obs, torch.from_numpy(self.memory), torch.from_numpy(self.episode_start))[1]

            started: list[int] = []

        # numpy buffers: a write costs a microsecond, a torch index-put several.
        observations = np.empty((n, steps, *self.obs.shape[1:]), dtype=np.float32)
        actions = np.empty((n, steps, *action_shape), dtype=action_dtype)
        log_probs = np.empty((n, steps), dtype=np.float32)
        values = np.zeros((n, steps + 1), dtype=np.float32)
        rewards = np.zeros((n, steps), dtype=np.float32)
        terminated = np.zeros((n, steps), dtype=bool)
        truncated = np.zeros((n, steps), dtype=bool)
        mask = np.zeros((n, steps), dtype=bool)
        action_masks = np.ones((n, steps, spec.action_dim), dtype=bool) if self.action_mask is not None else None
        finished = np.zeros(n, dtype=bool)
        obs = self.obs
        prev_done = self.prev_done
        length = steps
        with torch.inference_mode():
            for t in range(steps):
                observations[:, t] = obs
                if action_masks is not None:
                    action_masks[:, t] = self.action_mask
                action, log_probs[:, t], value = policy_step(torch.from_numpy(obs), noise[t])
                actions[:, t] = action
                if critic:
                    values[:, t] = value
                # A reset step (NEXT_STEP autoreset) is not a transition; padding after an
                # env's single episode neither.
                valid = ~(prev_done | finished) if episodes else ~prev_done
                mask[:, t] = valid
                obs, reward, term, trunc, info = envs.step(agent.to_env_actions(action))
                if action_masks is not None:
                    self.action_mask = self._masks(info)
                obs = np.asarray(obs, dtype=np.float32)
                rewards[:, t] = reward
                terminated[:, t] = term
                truncated[:, t] = trunc
                self._record_episodes(info, valid)
                if episodes:
                    finished |= prev_done
                prev_done = term | trunc
                if episodes and (finished | prev_done).all():
                    length = t + 1
                    break
            if critic:  # V(s_T) through the same forward as every V(s_t)
                values[:, length] = bootstrap_values(torch.from_numpy(obs)).numpy()
        if episodes:
            # An episode longer than max_steps is cut: that is a truncation.
            unfinished = ~(finished | prev_done)
            truncated[unfinished, length - 1] = True
        self.obs = obs
        self.prev_done = prev_done
        sl = slice(0, length)
        values_all = torch.from_numpy(values)
        return Rollout(
            observations=torch.from_numpy(observations[:, sl]),
            actions=torch.from_numpy(actions[:, sl]),
            log_probs=torch.from_numpy(log_probs[:, sl]),
            values=values_all[:, :length],
            rewards=torch.from_numpy(rewards[:, sl]),
            terminated=torch.from_numpy(terminated[:, sl]),
            truncated=torch.from_numpy(truncated[:, sl]),
            mask=torch.from_numpy(mask[:, sl]),
            next_values=values_all[:, 1 : length + 1],
            action_masks=None if action_masks is None else torch.from_numpy(action_masks[:, sl]),
            initial_state=initial_state if recurrent else None,
            episode_starts=torch.from_numpy(episode_starts[:, sl]) if recurrent else None,
        )

    def _masks(self, info: dict[str, Any]) -> np.ndarray | None:
        """The env's action masks after a reset or step, where the agent was built to use them."""
        spec = self.agent.spec
        return envs_lib.action_masks(self.envs, info, spec.action_dim) if spec.masked else None

    def _record_episodes(self, info: dict[str, Any], valid: np.ndarray) -> None:
        if "episode" not in info:
            return
        ended = info.get("_episode", np.zeros(self.num_envs, dtype=bool)) & valid
        for i in np.flatnonzero(ended):
            self.recent_returns.append(float(info["episode"]["r"][i]))
            self.recent_lengths.append(int(info["episode"]["l"][i]))

    def mean_recent_return(self) -> float:
        """Mean raw return of the last completed episodes (NaN before the first)."""
        return sum(self.recent_returns) / len(self.recent_returns) if self.recent_returns else float("nan")

    # ----- resume ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "obs": None if self.obs is None else self.obs.tolist(),
            "prev_done": self.prev_done.tolist(),
            "action_mask": None if self.action_mask is None else self.action_mask.tolist(),
            "memory": None if self.memory is None else self.memory.tolist(),
            "episode_start": self.episode_start.tolist(),
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
        }

    def load_state_dict(self, state: dict[str, Any], with_env_state: bool) -> None:
        self.recent_returns.extend(state["recent_returns"])
        self.recent_lengths.extend(state["recent_lengths"])
        if with_env_state and state["obs"] is not None:
            self.obs = np.asarray(state["obs"], dtype=np.float32)
            self.prev_done = np.asarray(state["prev_done"], dtype=bool)
            if state.get("action_mask") is not None:
                self.action_mask = np.asarray(state["action_mask"], dtype=bool)
            if state.get("memory") is not None and self.memory is not None:
                self.memory = np.asarray(state["memory"], dtype=np.float32)
                self.episode_start = np.asarray(state["episode_start"], dtype=bool)
