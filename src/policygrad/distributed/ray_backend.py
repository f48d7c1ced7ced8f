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
import logging
import os
import pickle
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policygrad.agent import Agent, AgentSpec
from policygrad.distributed.shards import (
    EnvFailure,
    ShardCollector,
    make_shard_envs,
    merge_episode_logs,
    pad_steps,
    shard_ranges,
)
from policygrad.errors import PolicygradError
from policygrad.rollout import Rollout

#: Seconds a new worker may take to start (process start, imports, env creation).
STARTUP_TIMEOUT = 120.0
#: Seconds to wait for CPUs that finished actors are still releasing before refusing.
RESOURCE_GRACE = 5.0


# ----- Ray itself ---------------------------------------------------------------------
def import_ray(private: bool) -> Any:
    """Import Ray with policygrad's settings, or a clear error when it is not installed.

    Usage statistics are off unless the user set ``RAY_USAGE_STATS_ENABLED``. A private
    instance (no address) binds to the loopback interface and uses token authentication;
    these environment variables only take effect if Ray was not imported before.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if private:
        # Ray treats "no cluster support" as: every service on 127.0.0.1, nothing reachable from outside.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise PolicygradError("--backend ray needs Ray, an optional extra: pip install 'policygrad[ray]'") from None
    return ray


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (``auto`` or ``HOST:PORT``), or start a private local one.

    Returns True when this call started Ray and so must shut it down. An already
    initialised Ray (a notebook, a test session) is used as it is.
    """
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "namespace": "policygrad"}
    if address is None:
        # "local": a new instance even if another one runs on this machine (ray.init() would join it).
        # Ray runs its workers at niceness 15; rollout workers are the job's main work, so they get the
        # learner's priority (0) — else any other load on the machine starves them.
        ray.init(address="local", include_dashboard=False, _system_config={"worker_niceness": 0}, **kwargs)
        return True
    try:
        ray.init(address=address, **kwargs)
    except Exception as err:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PolicygradError(
            f"could not join the Ray cluster at {address!r}: {first} — is 'ray start --head' running there, and "
            "do RAY_AUTH_MODE and the token match the cluster's? (see docs/distributed.md)"
        ) from None
    return False


def check_resources(ray: Any, workers: int, worker_cpus: float) -> None:
    """Refuse up front what Ray would otherwise wait for forever: more CPUs than the cluster has."""
    need = workers * worker_cpus
    total = float(ray.cluster_resources().get("CPU", 0.0))
    hint = "use fewer --workers or a fraction of a CPU each (e.g. --worker-cpus 0.5)"
    largest = max((float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")), default=0.0)
    if worker_cpus > largest + 1e-9:
        raise PolicygradError(
            f"--worker-cpus {worker_cpus:g} is more than any node of the Ray cluster has ({largest:g} CPUs); {hint}"
        )
    if need > total + 1e-9:
        raise PolicygradError(
            f"--workers {workers} x --worker-cpus {worker_cpus:g} needs {need:g} CPUs but the Ray cluster has "
            f"{total:g}; {hint}"
        )
    deadline = time.monotonic() + RESOURCE_GRACE
    while (free := float(ray.available_resources().get("CPU", 0.0))) < need - 1e-9:
        if time.monotonic() > deadline:
            raise PolicygradError(
                f"--workers {workers} x --worker-cpus {worker_cpus:g} needs {need:g} CPUs but only {free:g} of the "
                f"Ray cluster's {total:g} are free (other jobs hold the rest); {hint}"
            )
        time.sleep(0.2)


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
    ) -> None:
        torch.set_num_threads(threads)  # the same thread count as the learner: the same kernels
        if env_spec.id not in gym.registry:  # environments registered by the user's process
            gym.registry[env_spec.id] = env_spec
        self.agent = Agent(agent_spec)
        envs = make_shard_envs(env_spec.id, env_indices)
        self.collector = ShardCollector(envs, self.agent, seed, env_indices, num_envs)

    def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

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
        self.agent.load_state_dict(_tensors(weights))
        try:
            if episodes:
                rollout = self.collector.collect_episodes(steps, update)
            else:
                rollout = self.collector.collect(steps, update)
        except EnvFailure as err:
            return _failure(err)
        return {
            "rollout": _arrays(vars(rollout)),
            "episodes": self.collector.episode_log,
            "state": self.state() if snapshot else None,
        }

    def state(self) -> dict[str, Any]:
        """The shard's episodes in flight: the pickled envs (None if they cannot be pickled), obs, flags."""
        from ray import cloudpickle  # by value too: env classes defined in the user's script pickle

        try:
            envs = cloudpickle.dumps(self.collector.envs)
        except Exception:  # noqa: BLE001 - any pickling failure means "not saveable"
            envs = None
        return {"envs": envs, "obs": self.collector.obs, "prev_done": self.collector.prev_done.copy()}

    def load_state(self, state: dict[str, Any]) -> None:
        if state["envs"] is not None:
            self.collector.envs.close()
            self.collector.envs = pickle.loads(state["envs"])
        self.collector.obs = None if state["obs"] is None else np.array(state["obs"], dtype=np.float32)
        self.collector.prev_done = np.array(state["prev_done"], dtype=bool)


def _failure(err: EnvFailure) -> dict[str, Any]:
    return {"env_error": str(err)}


# Tensors travel as numpy arrays: Ray reads those from shared memory without copying or
# unpickling, about ten times faster than torch tensors for policy-sized objects.
def _arrays(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: tensor.detach().numpy() for name, tensor in tensors.items()}


def _tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():  # arrays in Ray's object store are read-only; they are only read
        warnings.simplefilter("ignore", UserWarning)
        return {name: torch.from_numpy(array) for name, array in arrays.items()}


# ----- the learner's side -------------------------------------------------------------
class _WorkerFault(Exception):
    """Workers that died or hung: recoverable by recreating them, if restarts are left."""

    def __init__(self, workers: list[int], kind: str, detail: str) -> None:
        super().__init__(detail)
        self.workers, self.kind, self.detail = workers, kind, detail


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class RayCollector:
    """The learner's rollout backend on Ray; the same interface and results as RolloutCollector.

    Config fields used: ``env_id``, ``num_envs``, ``seed``, ``threads``, ``workers``,
    ``ray_address``, ``worker_cpus``, ``rollout_timeout``, ``max_worker_restarts``.
    """

    def __init__(self, agent: Agent, cfg: Any, return_window: int = 20) -> None:
        check_options(cfg)
        self.agent = agent
        self.seed = cfg.seed
        self.num_envs = cfg.num_envs
        self.shards = shard_ranges(cfg.num_envs, cfg.workers)
        self.rollout_timeout = float(cfg.rollout_timeout)
        self.max_restarts = int(cfg.max_worker_restarts)
        self.restarts = [0] * cfg.workers
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=return_window)
        self.recent_lengths: collections.deque[int] = collections.deque(maxlen=return_window)
        self.workers: list[Any] = []
        self.worker_nodes: list[str] = [""] * cfg.workers
        # Each worker's state before the next batch, kept only when workers may be recreated.
        self._states: list[dict[str, Any]] | None = None
        self._next_update = 0
        self._closed = False
        address = _address(cfg.ray_address)
        self.ray = import_ray(private=address is None)
        self._owns_ray = connect(self.ray, address)
        try:
            check_resources(self.ray, cfg.workers, float(cfg.worker_cpus))
            self._actor_class = self.ray.remote(RolloutWorker).options(
                num_cpus=float(cfg.worker_cpus),
                max_restarts=0,  # recreated by us, from the state before the batch
                max_task_retries=0,  # a retried rollout on a fresh actor would change the data
                scheduling_strategy="SPREAD",
            )
            self._worker_args = (gym.spec(cfg.env_id), cfg.num_envs, agent.spec, cfg.seed, cfg.threads)
            self.workers = [self._spawn(k) for k in range(cfg.workers)]
            self._await_ready(range(cfg.workers), restarting=False)
        except BaseException:
            self.close()
            raise

    @property
    def restartable(self) -> bool:
        return self.max_restarts > 0

    def describe(self, k: int) -> str:
        shard = self.shards[k]
        envs = f"env {shard.start}" if len(shard) == 1 else f"envs {shard.start}-{shard.stop - 1}"
        return f"rollout worker {k} ({envs})"

    # ----- workers ---------------------------------------------------------------------
    def _spawn(self, k: int) -> Any:
        env_spec, num_envs, agent_spec, seed, threads = self._worker_args
        return self._actor_class.remote(env_spec, list(self.shards[k]), num_envs, agent_spec, seed, threads)

    def _await_ready(self, indices: Sequence[int], restarting: bool) -> None:
        refs = {self.workers[k].ready.remote(): k for k in indices}
        try:
            results = self._wait(refs, STARTUP_TIMEOUT)
        except _WorkerFault as fault:
            k = fault.workers[0]
            if fault.kind == "hung":
                reason = f"did not start within {STARTUP_TIMEOUT:g} s (no free CPUs left in the Ray cluster?)"
            else:
                reason = f"could not start: {fault.detail}"
            verb = "restarting " if restarting else ""
            self._fail(f"{verb}{self.describe(k)} {reason}")
        for k, info in results.items():
            self.worker_nodes[k] = info["node_id"]

    def _wait(self, refs: dict[Any, int], timeout: float) -> dict[int, Any]:
        """Results by worker; raises _WorkerFault for dead or silent workers, PolicygradError otherwise."""
        ray = self.ray
        deadline = time.monotonic() + timeout
        pending = list(refs)
        results: dict[int, Any] = {}
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                hung = sorted(refs[r] for r in pending)
                raise _WorkerFault(hung, "hung", f"no answer within {timeout:g} s")
            for ref in ready:
                k = refs[ref]
                try:
                    results[k] = ray.get(ref)
                except ray.exceptions.RayActorError as err:
                    if getattr(err, "actor_init_failed", False):
                        self._fail(f"{self.describe(k)} could not start: {_init_cause(err)}")
                    raise _WorkerFault([k], "died", _first_line(err)) from None
                except (
                    ray.exceptions.WorkerCrashedError,
                    ray.exceptions.NodeDiedError,
                    ray.exceptions.ObjectLostError,
                    ray.exceptions.LocalRayletDiedError,
                ) as err:
                    raise _WorkerFault([k], "died", _first_line(err)) from None
                except ray.exceptions.RayTaskError as err:
                    cause = err.cause if getattr(err, "cause", None) is not None else err
                    self._fail(f"{self.describe(k)} failed: {type(cause).__name__}: {_first_line(cause)}")
        return results

    def _call_all(self, method: str, args: Sequence[tuple], timeout: float) -> list[Any]:
        refs = {getattr(w, method).remote(*a): k for k, (w, a) in enumerate(zip(self.workers, args, strict=True))}
        results = self._wait(refs, timeout)
        return [results[k] for k in range(len(self.workers))]

    def _recover(self, fault: _WorkerFault, episodes: bool) -> None:
        """Recreate the faulted workers and put every worker back to its state before the batch."""
        what = {
            "died": "died",
            "hung": f"did not return its rollout within {self.rollout_timeout:g} s (--rollout-timeout)",
        }[fault.kind]
        for k in fault.workers:
            if self.restarts[k] >= self.max_restarts:
                detail = f" ({fault.detail})" if fault.kind == "died" else ""
                advice = (
                    "; allow recreating crashed workers with --max-worker-restarts K"
                    if self.max_restarts == 0
                    else f" after {self.restarts[k]} restarts (--max-worker-restarts {self.max_restarts})"
                )
                self._fail(
                    f"{self.describe(k)} {what}{detail}{advice}; training stopped and its last checkpoint is kept "
                    "(continue with 'policygrad resume RUN_DIR')"
                )
        if self._states is None or (not episodes and any(s["envs"] is None for s in self._states)):
            self._fail(
                f"{self.describe(fault.workers[0])} {what}, and the batch cannot be collected again exactly: its "
                "environments cannot be saved (pickled); training stopped and its last checkpoint is kept"
            )
        for k in fault.workers:
            self.restarts[k] += 1
            print(
                f"policygrad: {self.describe(k)} {what}; recreating it "
                f"(restart {self.restarts[k]} of {self.max_restarts}) and collecting the batch again",
                file=sys.stderr,
            )
            try:
                self.ray.kill(self.workers[k], no_restart=True)
            except Exception:  # noqa: BLE001 - it may be gone already
                pass
            self.workers[k] = self._spawn(k)
        self._await_ready(fault.workers, restarting=True)
        self._call_all("load_state", [(s,) for s in self._states], STARTUP_TIMEOUT)

    def _fail(self, message: str) -> None:
        self.close()
        raise PolicygradError(message)

    # ----- the RolloutBackend interface ------------------------------------------------
    def reset(self, seeds: int | list[int] | None) -> None:
        if isinstance(seeds, int):
            raise PolicygradError("the Ray backend needs one seed per environment (vectorization sync)")
        args = [(None if seeds is None else [seeds[i] for i in shard],) for shard in self.shards]
        try:
            failures = self._call_all("reset", args, self.rollout_timeout)
            for k, failure in enumerate(failures):
                if failure is not None:
                    self._fail(f"{self.describe(k)}: {failure['env_error']}")
            if self.restartable:
                self._states = self._call_all("state", [()] * len(self.workers), self.rollout_timeout)
        except _WorkerFault as fault:
            self._fail(f"{self.describe(fault.workers[0])} failed while resetting its environments ({fault.detail})")

    def collect(self, steps: int, update: int) -> Rollout:
        """``steps`` vector steps of every env, continuing the running episodes."""
        return self._gather(steps, update, episodes=False)

    def collect_episodes(self, max_steps: int, update: int) -> Rollout:
        """One complete episode per env (see RolloutCollector.collect_episodes)."""
        return self._gather(max_steps, update, episodes=True)

    def _gather(self, steps: int, update: int, episodes: bool) -> Rollout:
        weights = self.ray.put(_arrays(self.agent.state_dict()))  # one broadcast per update
        args = [(weights, steps, update, episodes, self.restartable)] * len(self.workers)
        while True:
            try:
                results = self._call_all("collect", args, self.rollout_timeout)
                break
            except _WorkerFault as fault:
                pending: _WorkerFault | None = fault
            while pending is not None:  # a worker may also fail while the others are being restored
                try:
                    self._recover(pending, episodes)
                    pending = None
                except _WorkerFault as again:
                    pending = again
        for k, result in enumerate(results):
            if "env_error" in result:
                self._fail(f"{self.describe(k)}: {result['env_error']}")
        parts = [Rollout(**_tensors(result["rollout"])) for result in results]
        length = max(part.rewards.shape[1] for part in parts)
        rollout = Rollout.concat([pad_steps(part, length) for part in parts])
        for episode_return, episode_length in merge_episode_logs([result["episodes"] for result in results]):
            self.recent_returns.append(episode_return)
            self.recent_lengths.append(episode_length)
        if self.restartable:
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
                states = self._call_all("state", [()] * len(self.workers), self.rollout_timeout)
            except _WorkerFault as fault:
                self._fail(f"{self.describe(fault.workers[0])} did not hand over its environments for the checkpoint")
        obs = None if any(s["obs"] is None for s in states) else np.concatenate([s["obs"] for s in states])
        return {
            "obs": None if obs is None else obs.tolist(),
            "prev_done": np.concatenate([s["prev_done"] for s in states]).tolist(),
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
            "ray": {
                "shards": [[shard.start, shard.stop] for shard in self.shards],
                "envs": [None if s["envs"] is None else base64.b64encode(s["envs"]).decode() for s in states],
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
        if state.get("obs") is None or not same_layout or any(blob is None for blob in saved.get("envs", [None])):
            print(
                "policygrad: this checkpoint does not hold the Ray workers' environments for this layout; "
                "restarting their episodes",
                file=sys.stderr,
            )
            self.reset([self.seed + 7919 * self._next_update + i for i in range(self.num_envs)])
            return
        obs = np.asarray(state["obs"], dtype=np.float32)
        prev_done = np.asarray(state["prev_done"], dtype=bool)
        states = [
            {
                "envs": base64.b64decode(blob),
                "obs": obs[shard.start : shard.stop],
                "prev_done": prev_done[shard.start : shard.stop],
            }
            for blob, shard in zip(saved["envs"], self.shards, strict=True)
        ]
        try:
            self._call_all("load_state", [(s,) for s in states], STARTUP_TIMEOUT)
        except _WorkerFault as fault:
            self._fail(f"{self.describe(fault.workers[0])} {fault.kind} while restoring the checkpoint")
        if self.restartable:
            self._states = states

    def close(self) -> None:
        """Stop the workers, and the Ray instance if this collector started it."""
        if self._closed:
            return
        self._closed = True
        for worker in self.workers:
            try:
                self.ray.kill(worker, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.workers = []
        if self._owns_ray:
            self.ray.shutdown()


def _address(value: Any) -> str | None:
    if value is None or str(value).strip().lower() in ("", "none", "local"):
        return None
    return str(value).strip()


def _init_cause(err: BaseException) -> str:
    text = str(err)
    for marker in ("EnvFailure:", "PolicygradError:", "Error:"):
        for line in reversed(text.splitlines()):
            if marker in line:
                return line.strip()
    return _first_line(err)


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
