"""Rollouts on Ray: the learner's collector, and the rollout workers it drives.

Each worker is a Ray actor holding a contiguous shard of the environments (its own
synchronous vector env, env ``i`` seeded ``seed + i``) and a copy of the policy. Per
update the learner puts the weights in the object store once (``ray.put``), every
worker collects its shard with them, and the learner concatenates the shards in env
order: the same :class:`~policygrad.rollout.Rollout` one process would have collected
(see :mod:`policygrad.distributed.shards` for why it is bit-identical).

Faults. An exception inside an environment stops training with a message naming the
worker, the env index and the error. A worker that dies (crash, kill, lost node) or
does not answer within ``rollout_timeout`` stops training too — unless
``max_worker_restarts`` allows recreating it: then the whole batch is discarded, every
worker is put back to its state before the batch, and the batch is collected again, so
the data are exactly those of a run without the fault. (Ray's own ``max_task_retries``
is not used: it reruns a task on a fresh actor and would silently change the data.)
"""

from __future__ import annotations

import base64
import collections
import pickle
import sys
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policygrad import env_source, env_state
from policygrad.agent import Agent, AgentSpec
from policygrad.distributed.ray_workers import (
    STARTUP_TIMEOUT,
    UsesWorkerGroup,
    WorkerFault,
    WorkerGroup,
    ready_info,
    to_arrays,
    to_tensors,
)
from policygrad.distributed.shards import (
    EnvFailure,
    ShardCollector,
    make_shard_envs,
    merge_episode_logs,
    pad_steps,
    shard_ranges,
)
from policygrad.errors import PolicygradError
from policygrad.kernels import rollout_sampler
from policygrad.rollout import Rollout


# ----- the worker ---------------------------------------------------------------------
class RolloutWorker:
    """A rollout worker (run as a Ray actor): one shard of the envs and a copy of the policy."""

    def __init__(
        self,
        env_spec: gym.envs.registration.EnvSpec,
        env_indices: Sequence[int],
        num_envs: int,
        agent_spec: AgentSpec,
        seed: int,
        threads: int,
        learner: str = "auto",
    ) -> None:
        torch.set_num_threads(threads)  # the same thread count as the learner: the same kernels
        if env_spec.id not in gym.registry:  # environments registered by the user's process
            gym.registry[env_spec.id] = env_spec
        self.agent = Agent(agent_spec)
        self.env_key, self.env_indices = env_spec.id, list(env_indices)
        envs = make_shard_envs(env_spec.id, env_indices)
        # The learner's own rollout forward, so that a shard draws exactly the local run's actions.
        sampler = rollout_sampler(self.agent, learner)
        self.collector = ShardCollector(envs, self.agent, seed, env_indices, num_envs, sampler=sampler)

    def ready(self) -> dict[str, Any]:
        return ready_info()

    def reset(self, seeds: list[int] | None) -> dict[str, Any] | None:
        try:
            self.collector.reset(seeds)
        except EnvFailure as err:
            return _failure(err)
        return None

    def collect(
        self, weights: dict[str, np.ndarray], steps: int, update: int, episodes: bool, snapshot: bool
    ) -> dict[str, Any]:
        """Collect this shard with ``weights``; with ``snapshot``, also return the state after it."""
        self.agent.load_state_dict(to_tensors(weights))
        try:
            if episodes:
                rollout = self.collector.collect_episodes(steps, update)
            else:
                rollout = self.collector.collect(steps, update)
        except EnvFailure as err:
            return _failure(err)
        return {
            "rollout": to_arrays(vars(rollout)),
            "episodes": self.collector.episode_log,
            "state": self.state() if snapshot else None,
        }

    def state(self) -> dict[str, Any]:
        """The shard's episodes in flight: the envs' state as data (:mod:`policygrad.env_state`), obs, flags.

        Environments policygrad cannot save as data are pickled instead (``"pickle"``, None
        if they cannot be): enough to recreate a worker, but resume unpickles it only when trusted.
        """
        blob = None
        try:
            envs = env_state.capture(self.collector.envs)
        except env_state.EnvStateError:
            from ray import cloudpickle  # by value too: env classes defined in the user's script pickle

            envs = None
            try:
                blob = cloudpickle.dumps(self.collector.envs)
            except Exception:  # noqa: BLE001 - any pickling failure means "not saveable"
                blob = None
        collector = self.collector
        return {
            "envs": envs,
            "pickle": blob,
            "obs": collector.obs,
            "prev_done": collector.prev_done.copy(),
            # policy=lstm: the state each env carries into its next step, and whether that step begins an episode
            "memory": None if collector.memory is None else collector.memory.copy(),
            "episode_start": collector.episode_start.copy(),
        }

    def load_state(self, state: dict[str, Any]) -> str | None:
        """Put the shard back to ``state`` (its pickle comes from the learner, or a run folder the user trusts).

        Returns why the saved state does not fit these environments, or None.
        """
        if state["envs"] is not None:
            try:
                env_state.apply(self.collector.envs, state["envs"])
            except env_state.EnvStateError as err:
                self.collector.envs.close()
                self.collector.envs = make_shard_envs(self.env_key, self.env_indices)
                return str(err)
        elif state.get("pickle") is not None:
            self.collector.envs.close()
            self.collector.envs = pickle.loads(state["pickle"])
        self.collector.obs = None if state["obs"] is None else np.array(state["obs"], dtype=np.float32)
        self.collector.prev_done = np.array(state["prev_done"], dtype=bool)
        if state.get("memory") is not None and self.collector.memory is not None:
            self.collector.memory = np.array(state["memory"], dtype=np.float32)
            self.collector.episode_start = np.array(state["episode_start"], dtype=bool)
        return None


def _failure(err: EnvFailure) -> dict[str, Any]:
    return {"env_error": str(err)}


# ----- the learner's side -------------------------------------------------------------
class RayCollector(UsesWorkerGroup):
    """The learner's rollout backend on Ray; the same interface and results as RolloutCollector.

    Config fields used: ``env_id``, ``num_envs``, ``seed``, ``threads``, ``workers``,
    ``ray_address``, ``worker_cpus``, ``rollout_timeout``, ``max_worker_restarts``.
    """

    #: Whether :meth:`load_state_dict` may unpickle environments saved as a pickle (``--trust-run-folder``).
    trust_pickles = False

    def __init__(self, agent: Agent, cfg: Any, return_window: int = 20) -> None:
        check_options(cfg)
        self.agent = agent
        self.seed = cfg.seed
        self.num_envs = cfg.num_envs
        self.shards = shard_ranges(cfg.num_envs, cfg.workers)
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=return_window)
        self.recent_lengths: collections.deque[int] = collections.deque(maxlen=return_window)
        # Each worker's state before the next batch, kept only when workers may be recreated.
        self._states: list[dict[str, Any]] | None = None
        self._next_update = 0
        env_spec = gym.spec(env_source.resolve(cfg.env_id, cfg.env_kwargs, cfg.wrappers))
        self.group = WorkerGroup(
            RolloutWorker,
            self.shards,
            lambda k: (env_spec, list(self.shards[k]), cfg.num_envs, agent.spec, cfg.seed, cfg.threads, cfg.learner),
            cfg,
            unit="envs",
            resume_command="policygrad resume RUN_DIR",
        )

    @property
    def worker_nodes(self) -> list[str]:
        """The Ray node each worker runs on."""
        return self.group.nodes

    def describe(self, k: int) -> str:
        return self.group.describe(k)

    def _restore(self, fault: WorkerFault, episodes: bool) -> None:
        """Put every worker (the recreated ones included) back to its state before the batch."""
        unsaved = any(s["envs"] is None and s.get("pickle") is None for s in self._states or [])
        if self._states is None or (not episodes and unsaved):
            self.group.fail(
                f"{self.describe(fault.workers[0])} {self.group.what_happened(fault)}, and the batch cannot be "
                "collected again exactly: its environments cannot be saved (pickled); training stopped and its "
                "last checkpoint is kept"
            )
        self.group.call_all("load_state", [(s,) for s in self._states], STARTUP_TIMEOUT)

    # ----- the RolloutBackend interface ------------------------------------------------
    def reset(self, seeds: int | list[int] | None) -> None:
        if isinstance(seeds, int):
            raise PolicygradError("the Ray backend needs one seed per environment (vectorization sync)")
        args = [(None if seeds is None else [seeds[i] for i in shard],) for shard in self.shards]
        group = self.group
        try:
            failures = group.call_all("reset", args)
            for k, failure in enumerate(failures):
                if failure is not None:
                    group.fail(f"{self.describe(k)}: {failure['env_error']}")
            if group.restartable:
                self._states = group.call_all("state", [()] * len(group))
        except WorkerFault as fault:
            group.fail(f"{self.describe(fault.workers[0])} failed while resetting its environments ({fault.detail})")

    def collect(self, steps: int, update: int) -> Rollout:
        """``steps`` vector steps of every env, continuing the running episodes."""
        return self._gather(steps, update, episodes=False)

    def collect_episodes(self, max_steps: int, update: int) -> Rollout:
        """One complete episode per env (see RolloutCollector.collect_episodes)."""
        return self._gather(max_steps, update, episodes=True)

    def _gather(self, steps: int, update: int, episodes: bool) -> Rollout:
        group = self.group
        weights = group.ray.put(to_arrays(self.agent.state_dict()))  # one broadcast per update
        args = [(weights, steps, update, episodes, group.restartable)] * len(group)
        results = group.call_all_recovering("collect", args, lambda fault: self._restore(fault, episodes))
        for k, result in enumerate(results):
            if "env_error" in result:
                group.fail(f"{self.describe(k)}: {result['env_error']}")
        parts = [Rollout(**to_tensors(result["rollout"])) for result in results]
        length = max(part.rewards.shape[1] for part in parts)
        rollout = Rollout.concat([pad_steps(part, length) for part in parts])
        for episode_return, episode_length in merge_episode_logs([result["episodes"] for result in results]):
            self.recent_returns.append(episode_return)
            self.recent_lengths.append(episode_length)
        if group.restartable:
            self._states = [result["state"] for result in results]
        self._next_update = update + 1
        return rollout

    def mean_recent_return(self) -> float:
        """Mean raw return of the last completed episodes (NaN before the first)."""
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")

    def state_dict(self) -> dict[str, Any]:
        """RolloutCollector's state (global obs, flags, episode statistics) plus the workers' envs."""
        states = self._states
        if states is None:
            try:
                states = self.group.call_all("state", [()] * len(self.group))
            except WorkerFault as fault:
                self.group.fail(
                    f"{self.describe(fault.workers[0])} did not hand over its environments for the checkpoint"
                )
        obs = None if any(s["obs"] is None for s in states) else np.concatenate([s["obs"] for s in states])
        memory = None if states[0].get("memory") is None else np.concatenate([s["memory"] for s in states])
        return {
            "obs": None if obs is None else obs.tolist(),
            "prev_done": np.concatenate([s["prev_done"] for s in states]).tolist(),
            # policy=lstm: the workers' LSTM states, under RolloutCollector's names (a local checkpoint's layout)
            "memory": None if memory is None else memory.tolist(),
            "episode_start": np.concatenate([s["episode_start"] for s in states]).tolist(),
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
            "ray": {
                "shards": [[shard.start, shard.stop] for shard in self.shards],
                "envs": [s["envs"] for s in states],  # data (policygrad.env_state), or None
                "pickles": [
                    None if s.get("pickle") is None else base64.b64encode(s["pickle"]).decode() for s in states
                ],
                "next_update": self._next_update,
            },
        }

    def load_state_dict(self, state: dict[str, Any], with_env_state: bool) -> None:
        """Restore statistics and, when the checkpoint holds them, every worker's episodes in flight."""
        self.recent_returns.extend(state["recent_returns"])
        self.recent_lengths.extend(state["recent_lengths"])
        saved = state.get("ray") or {}
        self._next_update = int(saved.get("next_update", 0))
        if not with_env_state:
            return  # the trainer restarts the episodes
        same_layout = saved.get("shards") == [[shard.start, shard.stop] for shard in self.shards]
        datas = saved.get("envs") or [None] * len(self.shards)
        pickles = saved.get("pickles") or [None] * len(self.shards)
        if not self.trust_pickles:
            pickles = [None] * len(pickles)  # never unpickled unless the user trusts the run folder
        why = None
        if state.get("obs") is None or not same_layout:
            why = "this checkpoint does not hold the Ray workers' environments for this layout"
        elif any(not isinstance(d, dict) and p is None for d, p in zip(datas, pickles, strict=True)):
            why = "the Ray workers' environments are saved only as a pickle, and unpickling runs code from the run "
            why += "folder; pass --trust-run-folder if you trust it"
        states = []
        if why is None:
            obs = np.asarray(state["obs"], dtype=np.float32)
            prev_done = np.asarray(state["prev_done"], dtype=bool)
            memory = None if state.get("memory") is None else np.asarray(state["memory"], dtype=np.float32)
            episode_start = np.asarray(state.get("episode_start", np.ones(self.num_envs)), dtype=bool)
            for data, blob, shard in zip(datas, pickles, self.shards, strict=True):
                rows = slice(shard.start, shard.stop)
                pickled = None if isinstance(data, dict) else base64.b64decode(blob)
                envs = data if isinstance(data, dict) else None
                states.append(
                    {
                        "envs": envs,
                        "pickle": pickled,
                        "obs": obs[rows],
                        "prev_done": prev_done[rows],
                        "memory": None if memory is None else memory[rows],
                        "episode_start": episode_start[rows],
                    }
                )
            try:
                unfit = self.group.call_all("load_state", [(s,) for s in states], STARTUP_TIMEOUT)
            except WorkerFault as fault:
                self.group.fail(f"{self.describe(fault.workers[0])} {fault.kind} while restoring the checkpoint")
            if any(unfit):
                why = f"the saved state does not fit the Ray workers' environments ({next(u for u in unfit if u)})"
        if why is not None:
            print(f"policygrad: {why}; restarting their episodes", file=sys.stderr)
            self.reset([self.seed + 7919 * self._next_update + i for i in range(self.num_envs)])
            return
        if self.group.restartable:
            self._states = states


def check_options(cfg: Any) -> None:
    """Refuse, with one clear line, settings the Ray backend cannot run exactly."""
    if cfg.workers > cfg.num_envs:
        raise PolicygradError(
            f"--workers {cfg.workers} needs at least as many environments (num_envs = {cfg.num_envs}); "
            "raise --num-envs or lower --workers"
        )
    if cfg.vectorization == "native":
        raise PolicygradError(
            "vectorization=native shares one random generator across all envs, so it cannot be split across "
            "Ray workers; use vectorization=auto (the default)"
        )
    if cfg.normalize_obs or cfg.normalize_reward:
        raise PolicygradError(
            "--backend ray does not support normalize_obs / normalize_reward yet (their running statistics would "
            "differ per worker, so results would not match --backend local); train with --backend local"
        )
