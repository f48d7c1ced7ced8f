"""Live training for the Evolution page: a worker process, its rows read as they arrive, and Stop.

:class:`LiveTraining` hands a job to a ``python -m policygrad.lab.worker`` process (the
library's Trainer on CartPole-v1), collects one row per update from its output on a reader
thread, and asks it to stop by creating a file. The page only polls
:meth:`LiveTraining.poll`: nothing it does waits for training. Importing torch takes a
few seconds, so :func:`prestart` keeps one spare worker ready, already past its imports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from policygrad.algorithms import get_algorithm
from policygrad.lab import inputs
from policygrad.lab.worker import ENV_ID, STOP_FILE

MAX_STEPS = 500_000
DEFAULT_STEPS = 30_000
#: After Stop, the worker gets this long to finish its update before it is killed.
STOP_GRACE_SECONDS = 20.0


class LiveTraining:
    """One training run of ``algo`` on CartPole-v1 in a separate process.

    ``status`` goes "starting" → "running" → "finished" | "stopped" | "failed"; ``rows``
    holds one dict per update (``env_step``, ``episodic_return_mean`` …).
    """

    def __init__(self, algo: str, total_steps: int = DEFAULT_STEPS, seed: int = 0) -> None:
        get_algorithm(algo)  # a clear error for an unknown name
        self.algo = algo
        self.total_steps = inputs.count(total_steps, "training steps", MAX_STEPS, minimum=1_000)
        self.seed = inputs.count(seed, "seed", 1_000_000, minimum=0)
        self.env_id = ENV_ID
        self.rows: list[dict[str, Any]] = []
        self.status = "starting"
        self.error: str | None = None
        self.started_at = time.monotonic()
        self._lock = threading.Lock()
        self._stop_requested_at: float | None = None
        self._run_dir = Path(tempfile.mkdtemp(prefix=f"policygrad-lab-{algo}-"))
        self._process = take_worker()
        job = {"algo": algo, "steps": self.total_steps, "seed": self.seed, "run_dir": str(self._run_dir)}
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(job) + "\n")
        self._process.stdin.flush()
        self._reader = threading.Thread(target=self._read, name=f"lab-training-{algo}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                if "ready" in message:
                    continue
                if "row" in message:
                    self.rows.append(message["row"])
                    if self.status == "starting":
                        self.status = "running"
                elif "finished" in message:
                    self.status = "finished" if message["finished"] == "budget" else "stopped"
                elif "error" in message:
                    self.status, self.error = "failed", str(message["error"])

    @property
    def running(self) -> bool:
        """Still starting or training."""
        return self.status in ("starting", "running")

    def poll(self) -> dict[str, Any]:
        """The current state: status, rows so far, progress in [0, 1]; notices a finished or dead worker."""
        code = self._process.poll()
        if code is not None:
            self._reader.join(timeout=5)
            with self._lock:
                if self.running:  # exited without saying why
                    stderr = self._process.stderr.read() if self._process.stderr else ""
                    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {code}"
                    self.status = "stopped" if self._stop_requested_at else "failed"
                    self.error = None if self._stop_requested_at else f"training process ended: {last}"
            shutil.rmtree(self._run_dir, ignore_errors=True)
        elif self._stop_requested_at and time.monotonic() - self._stop_requested_at > STOP_GRACE_SECONDS:
            self._process.kill()
        with self._lock:
            rows = list(self.rows)
        env_step = rows[-1]["env_step"] if rows else 0
        return {
            "status": self.status,
            "error": self.error,
            "rows": rows,
            "env_step": env_step,
            "progress": min(1.0, env_step / self.total_steps),
            "seconds": time.monotonic() - self.started_at,
        }

    def stop(self) -> None:
        """Ask the worker to stop after its current update."""
        if self._process.poll() is None and self._stop_requested_at is None:
            (self._run_dir / STOP_FILE).touch()
            self._stop_requested_at = time.monotonic()

    def wait(self, timeout: float) -> dict[str, Any]:
        """Block until the worker has exited (for tests and scripts); returns :meth:`poll`."""
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        return self.poll()

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.kill()


_spare: subprocess.Popen[str] | None = None
_spare_lock = threading.Lock()


def _start_worker() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "policygrad.lab.worker", "--parent-pid", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def prestart() -> None:
    """Make sure one spare worker is starting or ready (it exits when this process does)."""
    global _spare
    with _spare_lock:
        if _spare is None or _spare.poll() is not None:
            _spare = _start_worker()


def take_worker() -> subprocess.Popen[str]:
    """The spare worker if there is one, else a new one; the caller sends it a job."""
    global _spare
    with _spare_lock:
        worker, _spare = _spare, None
    if worker is None or worker.poll() is not None:
        worker = _start_worker()
    return worker
