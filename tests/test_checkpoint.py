"""Checkpoints round-trip, and a run killed with SIGKILL resumes bit-exactly."""

import csv
import subprocess
import sys

import pytest
import torch
from run_helpers import kill_9_after
from safetensors.torch import load_file

from policygrad.checkpoint import load_latest
from policygrad.trainer import Trainer, resolve_config

TIME_COLUMNS = {"wall_time", "steps_per_second"}


def rows_without_time(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(handle)]


def final_tensors(run_dir):
    checkpoint = load_latest(run_dir).path
    return load_file(str(checkpoint / "model.safetensors")), load_file(str(checkpoint / "optimizer.safetensors"))


def assert_same_run(a, b):
    rows_a, rows_b = rows_without_time(a), rows_without_time(b)
    assert len(rows_a) == len(rows_b) > 0
    assert [int(r["update"]) for r in rows_b] == list(range(1, len(rows_b) + 1))  # no duplicates, none missing
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra == rb
    for ta, tb in zip(final_tensors(a), final_tensors(b), strict=True):
        assert ta.keys() == tb.keys()
        for key in ta:
            assert torch.equal(ta[key], tb[key]), key


def cli(*args):
    return [sys.executable, "-m", "policygrad.cli", *args]


def test_checkpoint_round_trip(tmp_path):
    cfg, _ = resolve_config(
        "ppo",
        "Pendulum-v1",
        {
            "total_steps": 512,
            "num_envs": 2,
            "rollout_steps": 128,
            "minibatch_size": 64,
            "normalize_obs": True,
            "eval_every": 0,
            "eval_episodes": 1,
        },
    )
    trainer = Trainer.new("ppo", cfg, tmp_path / "run", quiet=True)
    agent, _ = trainer.run()
    checkpoint = load_latest(tmp_path / "run")
    loaded = checkpoint.build_agent()
    for key, value in agent.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    # Observation statistics travel with the weights, so the loaded agent acts on raw observations.
    assert loaded.obs_var.ne(1.0).any()
    obs = torch.randn(3).numpy()
    assert (agent.act(obs) == loaded.act(obs)).all()
    optimizer = torch.optim.Adam(loaded.parameters(), lr=1.0)
    checkpoint.restore_optimizer(optimizer)
    original = trainer.optimizer.state_dict()
    restored = optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for pid, state in original["state"].items():
        for name, value in state.items():
            assert torch.equal(restored["state"][pid][name], value)
    assert checkpoint.state["env_state_saved"] and checkpoint.state["normalizer"]["obs"]["count"] > 0


@pytest.mark.parametrize(
    "algo,settings,kill_after_rows",
    [
        ("a2c", "--steps 12000 --num-envs 8 --set rollout_steps=5 --set checkpoint_every=7 --set eval_every=3000", 120),
        ("reinforce", "--steps 6000 --set checkpoint_every=4 --set eval_every=2000", 10),
        (
            "ppo",
            "--steps 6144 --num-envs 4 --set rollout_steps=64 --set minibatch_size=64 --set checkpoint_every=3 "
            "--set normalize_obs=true --set normalize_reward=true --set anneal_lr=true",
            10,
        ),
    ],
)
def test_kill_9_then_resume_is_bit_exact(tmp_path, algo, settings, kill_after_rows):
    common = [algo, "CartPole-v1", "--seed", "3", "--quiet", "--set", "eval_episodes=3", *settings.split()]
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    subprocess.run(cli("train", *common, "--out", str(reference)), check=True)

    kill_9_after(subprocess.Popen(cli("train", *common, "--out", str(crashed))), crashed, kill_after_rows)
    subprocess.run(cli("resume", str(crashed), "--quiet"), check=True)
    assert_same_run(reference, crashed)


def test_resume_with_more_steps_extends_a_finished_run(tmp_path):
    run_dir = tmp_path / "run"
    base = ["--quiet", "--set", "eval_episodes=2", "--set", "eval_every=0"]
    subprocess.run(cli("train", "a2c", "CartPole-v1", "--steps", "800", "--out", str(run_dir), *base), check=True)
    first = rows_without_time(run_dir)
    subprocess.run(cli("resume", str(run_dir), "--steps", "1600", "--quiet"), check=True)
    rows = rows_without_time(run_dir)
    assert rows[: len(first)] == first and int(rows[-1]["env_step"]) >= 1600
    assert [int(r["update"]) for r in rows] == list(range(1, len(rows) + 1))
