"""Every algorithm runs on Discrete and Box actions and writes a complete run folder."""

import csv
import json
import math

import numpy as np
import pytest

import policygrad
from policygrad.algorithms import ALGORITHMS
from policygrad.run_log import COLUMNS

SHORT = {"eval_every": 0, "eval_episodes": 2, "num_envs": 2}
#: PPO with 256-step batches: an evaluation every 1,024 steps falls on an update boundary.
SMALL_PPO = {"num_envs": 4, "rollout_steps": 64, "minibatch_size": 64}


@pytest.mark.parametrize("algo", list(ALGORITHMS))
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_algorithm_runs_and_writes_run_folder(tmp_path, algo, env_id):
    extra = {"rollout_steps": 32, "minibatch_size": 32} if algo == "ppo" else {}
    if algo.startswith("reinforce"):
        extra["max_episode_steps"] = 100
    run_dir = tmp_path / "run"
    agent, history = policygrad.train(algo, env_id, out=run_dir, total_steps=300, **SHORT, **extra)
    assert history and history[-1]["env_step"] >= 300
    assert all(math.isfinite(row["policy_loss"]) for row in history)
    with open(run_dir / "metrics.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert [int(r["update"]) for r in rows] == list(range(1, len(history) + 1))
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in (
        "env_steps",
        "train_seconds",
        "eval_seconds",
        "steps_per_second",
        "peak_rss_mb",
        "final_eval_mean",
        "target_reached_step",
        "target_reached_train_seconds",
    ):
        assert key in summary
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == algo and config["config"]["total_steps"] == 300
    assert (run_dir / "learning_curve.png").stat().st_size > 1000
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "checkpoints" / "latest").is_file()
    action = agent.act(np.zeros(agent.spec.obs_dim))
    if env_id == "CartPole-v1":
        assert action in (0, 1)
    else:
        assert -2.0 <= float(action[0]) <= 2.0


def test_target_return_stops_early_and_is_recorded(tmp_path):
    run_dir = tmp_path / "t"
    _, history = policygrad.train(
        "ppo",
        "CartPole-v1",
        out=run_dir,
        total_steps=50_000,
        target_return=15.0,
        eval_every=1024,
        **SMALL_PPO,
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped"] == "target" and summary["target_reached_step"] == history[-1]["env_step"] < 50_000
    assert history[-1]["eval_return_mean"] >= 15.0


def test_same_seed_same_metrics(tmp_path):
    runs = []
    for name in ("a", "b"):
        _, history = policygrad.train("a2c", "CartPole-v1", out=tmp_path / name, total_steps=2000, seed=5, **SHORT)
        runs.append([{k: v for k, v in row.items() if k not in ("wall_time", "steps_per_second")} for row in history])
    assert repr(runs[0]) == repr(runs[1])  # repr: NaN (no finished episode yet) equals itself
