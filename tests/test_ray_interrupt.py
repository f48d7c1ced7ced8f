"""Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and SIGTERM during a ``--backend ray`` run.

The run checkpoints, prints the resume command with its real folder and exits 128 + the
signal's number; ``policygrad resume`` (on Ray again) then ends as the uninterrupted run.
Each run starts its own private Ray, so these are slow. The signal lands while the run is
paused inside checkpoint 5's write (the test hook of :mod:`policygrad.checkpoint`), so it
always arrives mid-run, whatever the machine's speed.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import ray_helpers

pytest.importorskip("ray")

from ray_helpers import assert_same_run  # noqa: E402

from policygrad.checkpoint import PAUSE_VARIABLE  # noqa: E402
from policygrad.trainer import Trainer, resolve_config  # noqa: E402

SETTINGS = {"num_envs": 8, "rollout_steps": 5, "eval_every": 0, "checkpoint_every": 5, "eval_episodes": 10}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_signals_during_a_ray_run_checkpoint_name_the_folder_and_resume_exactly(tmp_path):
    """Ctrl-C at update 5 of the run, SIGTERM at update 10 of its resume, then a resume to the end."""
    # The same run here, without Ray: Ray equals local bit for bit (tests/test_distributed_ray.py).
    cfg, _ = resolve_config("a2c", "CartPole-v1", dict(SETTINGS, total_steps=1200))
    Trainer.new("a2c", cfg, tmp_path / "local", quiet=True).run()
    run_dir, paused = tmp_path / "ray", tmp_path / "paused"
    sets = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]
    train = ["train", "a2c", "CartPole-v1", "--steps", "1200", "--out", str(run_dir), "--quiet", *sets]
    train += ["--backend", "ray", "--workers", "2"]
    for command, signum, update in (
        (train, signal.SIGINT, 5),
        (["resume", str(run_dir), "--quiet"], signal.SIGTERM, 10),
    ):
        env = dict(os.environ, **ray_helpers.RAY_ENV, **{PAUSE_VARIABLE: f"{update}:done:{paused}"})
        proc = subprocess.Popen(
            [sys.executable, "-m", "policygrad.cli", *command],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
        deadline = time.monotonic() + 300
        while not paused.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, f"the run did not reach checkpoint {update} in 5 minutes"
            time.sleep(0.05)
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # Ctrl-C: the learner and every process of its group
        else:
            os.kill(proc.pid, signum)  # what a scheduler or `kill` sends
        time.sleep(0.5)
        paused.unlink()  # the write goes on; the signal is seen once it returns
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 128 + signum, stderr
        assert stderr.strip().splitlines()[-1] == (
            f"policygrad: interrupted by {signal.Signals(signum).name} after update {update}, which is "
            f"checkpointed; continue with: policygrad resume {run_dir}"
        )
        assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"update_{update:07d}"
    resume = subprocess.run(
        [sys.executable, "-m", "policygrad.cli", "resume", str(run_dir), "--quiet"],
        capture_output=True,
        text=True,
        env=dict(os.environ, **ray_helpers.RAY_ENV),
        timeout=300,
    )
    assert resume.returncode == 0, resume.stderr
    assert_same_run(tmp_path / "local", run_dir)
