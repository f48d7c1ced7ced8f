"""Sweeps on Ray: each run of a sweep as one Ray task, on this machine or a cluster.

``policygrad sweep ... --backend ray`` hands every (setting, seed) run to
:func:`policygrad.sweeps.train_run` inside a Ray task instead of a local worker process;
everything else — the plan, the run folders, resuming, the report — is the sweep's own, so
a Ray sweep gives the numbers of a local one and either may resume the other.

Ray is joined as the Ray rollout backend joins it (:func:`~policygrad.distributed.ray_workers.connect`):
``--ray-address`` (or ``RAY_ADDRESS``) names a running cluster, otherwise the sweep starts a
private local Ray and stops it at the end. On a cluster of several machines the sweep folder
must be on a file system every node sees (NFS or similar): the tasks write the run folders
themselves. Progress reaches the parent through a Ray queue (an actor holding no CPU).

A task whose process dies (a lost node, the OOM killer) is rerun by Ray; it resumes its run
from the last checkpoint, which gives the numbers of an uninterrupted run, so the retry
changes nothing but time. If the sweep itself is killed, Ray ends the tasks of its job, and
``policygrad sweep --resume DIR`` continues as after a local sweep.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from policygrad.distributed.ray_workers import connect, first_line, import_ray, ray_address
from policygrad.errors import PolicygradError

#: Reruns of a task whose worker process died; each resumes from the run's last checkpoint.
TASK_RETRIES = 2


class _Messages:
    """The Ray queue as the sweep loop reads a queue: ``get(timeout)``, raising ``queue.Empty``.

    A zero timeout asks without waiting (Ray's ``get(timeout=0)`` would give up before
    looking at a non-empty queue).
    """

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def get(self, timeout: float) -> Any:
        return self.queue.get(timeout=timeout) if timeout > 0 else self.queue.get_nowait()


class RayTaskPool:
    """The runs of a sweep as Ray tasks, one CPU each: the pool interface of :class:`policygrad.sweeps.ProcessPool`.

    ``target(index, algo, env_id, values, run_dir, messages)`` trains one run
    (:func:`policygrad.sweeps.train_reporting`); its errors come back as the task's.
    """

    def __init__(self, target: Callable[..., None], address: str | None = None) -> None:
        address = ray_address(address if address is not None else os.environ.get("RAY_ADDRESS"))
        self.ray = import_ray(private=address is None)
        self._owns_ray = connect(self.ray, address)
        from ray.util.queue import Queue

        self._queue = Queue(actor_options={"num_cpus": 0})
        self.messages = _Messages(self._queue)
        self._task = self.ray.remote(target).options(num_cpus=1, max_retries=TASK_RETRIES)
        self.active: dict[int, Any] = {}

    def default_workers(self) -> int:
        """As many runs at a time as the cluster has CPUs."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def start(self, index: int, algo: str, env_id: str, values: dict[str, Any], run_dir: Path) -> None:
        self.active[index] = self._task.remote(index, algo, env_id, values, str(run_dir), self._queue)

    def reap(self) -> list[tuple[int, str | None]]:
        """The runs whose task ended since the last call, with the error that ended each (None: success)."""
        if not self.active:
            return []
        refs = {ref: index for index, ref in self.active.items()}
        ready, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=0)
        ended = []
        for ref in ready:
            index = refs[ref]
            del self.active[index]
            ended.append((index, self._error(ref)))
        return ended

    def _error(self, ref: Any) -> str | None:
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:  # the run raised: its own message
            cause = getattr(err, "cause", None) or err
            return str(cause) if isinstance(cause, PolicygradError) else f"{type(cause).__name__}: {first_line(cause)}"
        except self.ray.exceptions.RayError as err:  # the task's process or node was lost, past its retries
            return f"the Ray task failed: {first_line(err)}"
        return None

    def stop(self) -> None:
        """Cancel every running task (each run keeps its last checkpoint)."""
        for ref in self.active.values():
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - it may have ended meanwhile
                pass
        self.active.clear()

    def close(self) -> None:
        """Remove the progress queue, and stop Ray if this pool started it."""
        try:
            self._queue.shutdown()
        except Exception:  # noqa: BLE001 - Ray may be gone already
            pass
        if self._owns_ray:
            self.ray.shutdown()


__all__ = ["TASK_RETRIES", "RayTaskPool"]
