"""Running the CLI as a user would, from the tests: a subprocess that sees the tests' env modules, killed mid-run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def cli(*args, **kwargs) -> subprocess.Popen:
    """``python -m policygrad.cli ARGS`` with the tests folder importable (``pixel_envs:…``, ``space_envs:…``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "policygrad.cli", *map(str, args)], env=env, **kwargs)


def kill_9_after(proc: subprocess.Popen, run_dir: Path, rows: int, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` once its run folder has a checkpoint and more than ``rows`` metrics lines."""
    deadline, metrics = time.time() + timeout, run_dir / "metrics.csv"
    while time.time() < deadline:
        if metrics.exists() and sum(1 for _ in open(metrics)) > rows and (run_dir / "checkpoints").exists():
            break
        if proc.poll() is not None:
            pytest.fail("training finished before it could be killed; raise its budget")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
