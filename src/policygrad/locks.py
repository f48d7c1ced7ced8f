"""The one exclusive file lock policygrad takes: a run folder's writer, a sweep's or a tuning's folder.

``flock`` on a lock file, so the OS drops the lock when its holder ends however it ends (a
killed writer never blocks the next); the holder writes its PID into the file, so whoever is
refused can be told which process holds it.

A lock belongs to the open file, which ``fork`` shares: a child forked while it is held (an
async environment worker, a sweep worker) would keep it alive after its parent is killed and
block the next writer. So each forked child closes its copies of the held descriptors at once
(``os.register_at_fork``); a child started by ``exec`` never gets them (Python's descriptors
are not inheritable).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from policygrad.errors import PolicygradError

#: The lock descriptors this process holds (taken by :func:`take_exclusive`, not yet released).
_HELD: set[int] = set()


def _close_in_forked_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)  # the child's copy only: the parent's lock stays held
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_forked_child)


def take_exclusive(path: Path, refusal: Callable[[str], str], wait: float = 0.0) -> int:
    """Lock ``path`` (created if missing) for this process; returns its descriptor, for :func:`release`.

    If another process holds it after ``wait`` seconds: :class:`PolicygradError` with ``refusal(pid)``,
    the holder's PID as it wrote it ("unknown" if it wrote none yet). OS errors opening the file propagate.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PolicygradError(refusal(holder)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD.add(fd)
    return fd


def release(fd: int) -> None:
    """Release a lock :func:`take_exclusive` returned (closing its descriptor); a no-op if already released."""
    if fd in _HELD:
        _HELD.discard(fd)
        os.close(fd)


__all__ = ["release", "take_exclusive"]
