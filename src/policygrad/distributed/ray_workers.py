"""Ray rollout workers as a group: start, call, time out, recreate, stop — shared by every Ray backend.

A :class:`WorkerGroup` owns ``len(shards)`` Ray actors of one class, worker ``k`` holding
the contiguous shard ``shards[k]`` of the batch (environments for Gymnasium rollouts,
responses for language-model sampling). It turns Ray's failure modes into two outcomes:

- :class:`WorkerFault` — a worker died (crash, kill, lost node) or did not answer within
  the timeout; the caller may :meth:`WorkerGroup.recreate` it (within
  ``max_worker_restarts``) and collect the batch again;
- :class:`~policygrad.errors.PolicygradError` with one clear line — anything that
  retrying cannot fix (an exception inside the worker's code, no restarts left, a request
  the cluster can never satisfy). The group stops its workers (and a Ray instance it
  started) before raising.

Ray's own ``max_restarts`` / ``max_task_retries`` stay off: they rerun a task on a fresh
actor behind the caller's back and would silently change the data.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from policygrad.errors import PolicygradError

#: Seconds a new worker may take to start (process start, imports, building its shard).
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
    check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except Exception as err:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PolicygradError(
            f"could not join the Ray cluster at {address!r}: {first} — is 'ray start --head' running there, and "
            "do RAY_AUTH_MODE and the token match the cluster's? (see docs/distributed.md)"
        ) from None
    return False


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with one line, when nothing listens at ``HOST:PORT``.

    Ray itself retries an unreachable head for minutes, printing warnings. ``auto`` (and
    ``ray://`` client addresses) are left to Ray.
    """
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise PolicygradError(f"--ray-address {address!r} is not auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise PolicygradError(
            f"could not reach the Ray cluster at {address!r} ({err.strerror or type(err).__name__}) — is "
            "'ray start --head' running there, and is the port open from this machine? (see docs/distributed.md)"
        ) from None


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


def ray_address(value: Any) -> str | None:
    """The ``ray_address`` setting as an address to join, or None for a private local instance."""
    if value is None or str(value).strip().lower() in ("", "none", "local"):
        return None
    return str(value).strip()


# Tensors travel as numpy arrays: Ray reads those from shared memory without copying or
# unpickling, about ten times faster than torch tensors for policy-sized objects.
def to_arrays(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Tensors (or None) by name → numpy arrays, for sending through Ray's object store."""
    return {name: None if t is None else t.detach().numpy() for name, t in tensors.items()}


def to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_arrays` (no copy)."""
    with warnings.catch_warnings():  # arrays in Ray's object store are read-only; they are only read
        warnings.simplefilter("ignore", UserWarning)
        return {name: None if a is None else torch.from_numpy(a) for name, a in arrays.items()}


# ----- faults -------------------------------------------------------------------------
class WorkerFault(Exception):
    """Workers that died or hung: recoverable by recreating them, if restarts are left."""

    def __init__(self, workers: list[int], kind: str, detail: str) -> None:
        super().__init__(detail)
        self.workers, self.kind, self.detail = workers, kind, detail


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _init_cause(err: BaseException) -> str:
    text = str(err)
    for marker in ("EnvFailure:", "PolicygradError:", "Error:"):
        for line in reversed(text.splitlines()):
            if marker in line:
                return line.strip()
    return first_line(err)


# ----- the group ----------------------------------------------------------------------
class WorkerGroup:
    """Ray actors of ``actor_class``, worker ``k`` owning ``shards[k]``.

    ``worker_args(k)`` gives the constructor arguments of worker ``k`` (also when it is
    recreated). ``unit`` names what a shard holds in messages ("envs", "responses");
    ``resume_command`` is what the user runs to continue after a fatal fault. Config
    fields used: ``workers``, ``ray_address``, ``worker_cpus``, ``rollout_timeout``,
    ``max_worker_restarts``.
    """

    def __init__(
        self,
        actor_class: type,
        shards: list[range],
        worker_args: Callable[[int], tuple],
        cfg: Any,
        unit: str,
        resume_command: str,
    ) -> None:
        self.shards = shards
        self.unit = unit
        self.resume_command = resume_command
        self.timeout = float(cfg.rollout_timeout)
        self.max_restarts = int(cfg.max_worker_restarts)
        self.restarts = [0] * len(shards)
        self.workers: list[Any] = []
        self.nodes: list[str] = [""] * len(shards)
        self.pids: list[int] = [0] * len(shards)
        self._worker_args = worker_args
        self._closed = False
        address = ray_address(cfg.ray_address)
        self.ray = import_ray(private=address is None)
        self._owns_ray = connect(self.ray, address)
        try:
            check_resources(self.ray, len(shards), float(cfg.worker_cpus))
            self._actor_class = self.ray.remote(actor_class).options(
                num_cpus=float(cfg.worker_cpus),
                max_restarts=0,  # recreated by the caller, from the state before the batch
                max_task_retries=0,  # a retried rollout on a fresh actor would change the data
                scheduling_strategy="SPREAD",
            )
            self.workers = [self._spawn(k) for k in range(len(shards))]
            self.await_ready(range(len(shards)), restarting=False)
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.workers)

    @property
    def restartable(self) -> bool:
        """Whether crashed or hung workers may be recreated (``max_worker_restarts`` > 0)."""
        return self.max_restarts > 0

    def describe(self, k: int) -> str:
        """``rollout worker k (envs a-b)``: how messages name worker ``k``."""
        shard = self.shards[k]
        one = self.unit.rstrip("s")
        what = f"{one} {shard.start}" if len(shard) == 1 else f"{self.unit} {shard.start}-{shard.stop - 1}"
        return f"rollout worker {k} ({what})"

    def _spawn(self, k: int) -> Any:
        return self._actor_class.remote(*self._worker_args(k))

    def await_ready(self, indices: Sequence[int], restarting: bool) -> None:
        """Wait for the workers' ``ready()`` (see :func:`ready_info`) or fail with why they did not start."""
        refs = {self.workers[k].ready.remote(): k for k in indices}
        try:
            results = self.wait(refs, STARTUP_TIMEOUT)
        except WorkerFault as fault:
            k = fault.workers[0]
            if fault.kind == "hung":
                reason = f"did not start within {STARTUP_TIMEOUT:g} s (no free CPUs left in the Ray cluster?)"
            else:
                reason = f"could not start: {fault.detail}"
            verb = "restarting " if restarting else ""
            self.fail(f"{verb}{self.describe(k)} {reason}")
        for k, info in results.items():
            self.nodes[k], self.pids[k] = info["node_id"], info["pid"]

    def wait(self, refs: dict[Any, int], timeout: float) -> dict[int, Any]:
        """Results by worker; raises WorkerFault for dead or silent workers, PolicygradError otherwise."""
        ray = self.ray
        deadline = time.monotonic() + timeout
        pending = list(refs)
        results: dict[int, Any] = {}
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                hung = sorted(refs[r] for r in pending)
                raise WorkerFault(hung, "hung", f"no answer within {timeout:g} s")
            for ref in ready:
                k = refs[ref]
                try:
                    results[k] = ray.get(ref)
                except ray.exceptions.RayActorError as err:
                    if getattr(err, "actor_init_failed", False):
                        self.fail(f"{self.describe(k)} could not start: {_init_cause(err)}")
                    raise WorkerFault([k], "died", first_line(err)) from None
                except (
                    ray.exceptions.WorkerCrashedError,
                    ray.exceptions.NodeDiedError,
                    ray.exceptions.ObjectLostError,
                    ray.exceptions.LocalRayletDiedError,
                ) as err:
                    raise WorkerFault([k], "died", first_line(err)) from None
                except ray.exceptions.RayTaskError as err:
                    cause = err.cause if getattr(err, "cause", None) is not None else err
                    self.fail(f"{self.describe(k)} failed: {type(cause).__name__}: {first_line(cause)}")
        return results

    def call_all(self, method: str, args: Sequence[tuple], timeout: float | None = None) -> list[Any]:
        """``worker_k.method(*args[k])`` on every worker; results in worker order."""
        refs = {getattr(w, method).remote(*a): k for k, (w, a) in enumerate(zip(self.workers, args, strict=True))}
        results = self.wait(refs, self.timeout if timeout is None else timeout)
        return [results[k] for k in range(len(self.workers))]

    def recreate(self, fault: WorkerFault) -> None:
        """Replace the faulted workers with fresh ones, or fail when no restarts are left.

        The caller then puts the new workers back into the state the batch started from.
        """
        what = self.what_happened(fault)
        for k in fault.workers:
            if self.restarts[k] >= self.max_restarts:
                detail = f" ({fault.detail})" if fault.kind == "died" else ""
                advice = (
                    "; allow recreating crashed workers with --max-worker-restarts K"
                    if self.max_restarts == 0
                    else f" after {self.restarts[k]} restarts (--max-worker-restarts {self.max_restarts})"
                )
                self.fail(
                    f"{self.describe(k)} {what}{detail}{advice}; training stopped and its last checkpoint is kept "
                    f"(continue with '{self.resume_command}')"
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
        self.await_ready(fault.workers, restarting=True)

    def what_happened(self, fault: WorkerFault) -> str:
        """``died`` or ``did not return its rollout within …``, for messages."""
        if fault.kind == "died":
            return "died"
        return f"did not return its rollout within {self.timeout:g} s (--rollout-timeout)"

    def call_all_recovering(
        self, method: str, args: Sequence[tuple], restore: Callable[[WorkerFault], None]
    ) -> list[Any]:
        """:meth:`call_all`, recreating faulted workers and calling again until every worker answers.

        ``restore(fault)`` runs after each recreation: it puts every worker back into the
        state the batch started from (it may raise WorkerFault again).
        """
        while True:
            try:
                return self.call_all(method, args)
            except WorkerFault as fault:
                pending: WorkerFault | None = fault
            while pending is not None:  # a worker may also fail while the others are being restored
                try:
                    self.recreate(pending)
                    restore(pending)
                    pending = None
                except WorkerFault as again:
                    pending = again

    def fail(self, message: str) -> None:
        """Stop the workers and raise ``message`` as a PolicygradError."""
        self.close()
        raise PolicygradError(message)

    def close(self) -> None:
        """Stop the workers, and the Ray instance if this group started it."""
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


class UsesWorkerGroup:
    """Base of the learner-side classes that run on a :class:`WorkerGroup` held as ``self.group``."""

    group: WorkerGroup

    @property
    def restarts(self) -> list[int]:
        """How often each worker was recreated."""
        return self.group.restarts

    def close(self) -> None:
        """Stop the workers, and the Ray instance if this group started it."""
        self.group.close()


def ready_info() -> dict[str, Any]:
    """What a worker's ``ready()`` returns: its process id and Ray node (call inside the worker)."""
    import ray

    return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}
