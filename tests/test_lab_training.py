"""Live training for the Evolution page: the worker process trains, reports every update, and stops on request."""

from __future__ import annotations

import time

import pytest

from policygrad.errors import PolicygradError
from policygrad.lab.training import LiveTraining

pytestmark = pytest.mark.timeout(180)


def _wait_for(job: LiveTraining, condition, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job.poll()
        if condition(state):
            return state
        time.sleep(0.2)
    job.stop()
    raise AssertionError(f"timed out; last state {job.poll()['status']}")


def test_training_reports_every_update_then_finishes() -> None:
    job = LiveTraining("a2c", total_steps=6_000, seed=0)
    state = _wait_for(job, lambda s: s["status"] not in ("starting", "running"))
    assert state["status"] == "finished", state["error"]
    steps = [row["env_step"] for row in state["rows"]]
    batch = steps[0]  # one update's env steps under the lab's preset
    assert steps == sorted(steps) and steps[-1] >= 6_000 and len(steps) >= 6_000 // batch >= 10
    assert state["progress"] == 1.0
    assert all(row["update"] == i + 1 for i, row in enumerate(state["rows"]))


def test_stop_ends_training_early() -> None:
    job = LiveTraining("actor-critic", total_steps=500_000, seed=1)  # the slowest step: seconds of work left at Stop
    _wait_for(job, lambda s: len(s["rows"]) >= 2)
    job.stop()
    state = _wait_for(job, lambda s: not job.running, timeout=60)
    assert state["status"] == "stopped"
    assert state["env_step"] < 500_000


def test_bad_training_requests() -> None:
    with pytest.raises(PolicygradError, match="unknown algorithm"):
        LiveTraining("ppo2")
    with pytest.raises(PolicygradError, match="training steps"):
        LiveTraining("ppo", total_steps=10)


def test_long_runs_draw_a_thinned_curve_that_ends_at_the_newest_row() -> None:
    from policygrad.lab.charts import MAX_CURVE_POINTS, training_curve

    rows = [{"env_step": 32 * (i + 1), "episodic_return_mean": float(i % 500)} for i in range(15_625)]
    data = training_curve(rows, "#2ca02c", 500_000).data
    assert len(data) <= MAX_CURVE_POINTS
    assert data["env_step"].iloc[-1] == rows[-1]["env_step"]
    assert data["env_step"].is_monotonic_increasing
    short = training_curve(rows[:40], "#2ca02c", 500_000).data
    assert list(short["env_step"]) == [row["env_step"] for row in rows[:40]]  # short runs: every update
