"""Worker processes for sweeps and tuning: started cheaply, dying with their parent, one owner per folder.

A sweep or a tuning run starts one process per training run (or per Optuna worker). They
come from a fork server that has already imported the trainer, so a worker starts in
milliseconds instead of re-importing torch. A worker dies as soon as the process that
started it dies, even of SIGKILL: on Linux through ``PR_SET_PDEATHSIG``, elsewhere (and as
a second guard) through a thread that watches the parent's process id. So a killed sweep
never leaves a worker writing into a run folder that ``--resume`` then opens again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.context import BaseContext
from pathlib import Path
from types import TracebackType

from policygrad.locks import release, take_exclusive

#: Imported once by the fork server; every worker starts with them loaded.
PRELOAD = ["policygrad.trainer"]

_PR_SET_PDEATHSIG = 1


def worker_context() -> BaseContext:
    """The multiprocessing context for workers: a fork server with the trainer preloaded (spawn where none)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def default_workers() -> int:
    """One worker per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def die_with_parent() -> None:
    """Call first thing in a worker: end this process as soon as its parent is gone."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class FolderLock:
    """An exclusive OS lock (``flock``) on ``folder/.policygrad.lock``, released even if the holder is killed.

    ``what`` names the folder in the one-line error a second process gets, after waiting up
    to ``wait`` seconds (a worker of a killed parent takes a moment to die); ``lock_file``
    puts the lock elsewhere (beside a run folder that may be deleted and made again).
    """

    def __init__(self, folder: Path, what: str, wait: float = 0.0, lock_file: Path | None = None) -> None:
        self.folder = Path(folder)
        self.path = Path(lock_file) if lock_file is not None else self.folder / ".policygrad.lock"
        self.what, self.wait = what, wait
        self.handle: int | None = None

    def __enter__(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = take_exclusive(
            self.path,
            lambda holder: (
                f"{self.what} {self.folder} is in use by another policygrad process (pid {holder}); "
                "wait for it to finish or stop it first"
            ),
            self.wait,
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.handle is not None:
            release(self.handle)
            self.handle = None


__all__ = ["FolderLock", "default_workers", "die_with_parent", "worker_context"]
