"""The one exclusive file lock policygrad takes: a run folder's writer, a sweep's or a tuning's folder.

``flock`` on a lock file, so the OS drops the lock when its holder ends however it ends (a
killed writer never blocks the next); the holder writes its PID into the file, so whoever is
refused can be told which process holds it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from policygrad.errors import PolicygradError


def take_exclusive(path: Path, refusal: Callable[[str], str], wait: float = 0.0) -> int:
    """Lock ``path`` (created if missing) for this process; returns the open descriptor (closing it releases).

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
    return fd


__all__ = ["take_exclusive"]
