"""A sweep killed midway with SIGKILL, shared by the local and the Ray sweep tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def kill_sweep_midway(sweep_args: list[str], out: Path, runs: list[str], timeout: float) -> None:
    """Run ``policygrad sweep SWEEP_ARGS --out OUT`` and SIGKILL it once one of ``runs`` has two checkpoints."""
    command = [sys.executable, "-m", "policygrad.cli", "sweep", *sweep_args, "--out", str(out)]
    parent = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # midway: a run past its first checkpoints, and runs left to do
        saved = [len(list((out / r / "checkpoints").glob("update_*"))) for r in runs]
        if max(saved, default=0) >= 2 or parent.poll() is not None:
            break
        time.sleep(0.05)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
