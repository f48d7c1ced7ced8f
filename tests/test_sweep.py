"""policygrad sweep and report: a ranked report whose intervals an exact bootstrap confirms; SIGKILL and resume."""

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sweep_helpers import kill_sweep_midway

import policygrad
from policygrad.cli import main
from policygrad.sweeps import parse_grid, parse_seeds

pytest.importorskip("rliable")

#: Two A2C settings on CartPole-v1 that a few thousand steps tell apart: the preset's rate and a tiny one.
GRID = {"learning_rate": ["1e-2", "1e-5"], "eval_every": ["1024"], "eval_episodes": ["5"]}
WALL_TIME_COLUMNS = {"wall_time", "steps_per_second"}


def exact_bootstrap(scores, statistic):
    """Every equally likely resample of ``scores`` (n^n of them) → its statistic, sorted."""
    n = len(scores)
    return np.sort([statistic(np.asarray(scores)[list(idx)]) for idx in itertools.product(range(n), repeat=n)])


def middle_half_mean(values):
    ordered = np.sort(values)
    quarter = len(ordered) // 4
    return ordered[quarter : len(ordered) - quarter].mean()


def test_seeds_and_grid_parse_and_bad_input_is_one_line(tmp_path, capsys):
    assert parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    assert parse_grid("a2c", ["hidden_sizes=64,64/32", "gamma=0.9,0.99"]) == {
        "hidden_sizes": ["64,64", "32"],
        "gamma": ["0.9", "0.99"],
    }
    for argv in (
        ["sweep", "a2c", "CartPole-v1", "--seeds", "5-1", "--out", str(tmp_path / "s")],
        ["sweep", "a2c", "CartPole-v1", "--set", "learning_rate=fast", "--out", str(tmp_path / "s")],
        ["sweep", "a2c", "CartPole-v1", "--workers", "0", "--out", str(tmp_path / "s")],
        ["sweep", "--resume", str(tmp_path)],
        ["report", str(tmp_path)],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("policygrad: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "s" / "sweep.json").exists()


def test_the_api_functions_are_their_implementations_imported_on_first_use():
    from policygrad import reports, sweeps, tuner

    assert (policygrad.sweep, policygrad.report, policygrad.tune) == (sweeps.sweep, reports.report, tuner.tune)
    for api in (policygrad.sweep, policygrad.report, policygrad.tune):
        assert api.__doc__
    light = "import sys, policygrad; print(sorted({'torch', 'optuna', 'rliable'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", light], capture_output=True, text=True).stdout.strip() == "[]"


def test_report_ranks_the_settings_and_an_exact_bootstrap_confirms_its_intervals(tmp_path):
    out = tmp_path / "sweep"
    status = policygrad.sweep("a2c", "CartPole-v1", out=out, seeds="0-3", grid=GRID, steps=3000, workers=2)
    assert status["finished"] == 8
    result = policygrad.report(out, reps=4000)
    assert (out / "report.md").is_file() and (out / "learning_curves.png").is_file()
    assert json.loads((out / "report.json").read_text())["settings"][0]["name"] == result["settings"][0]["name"]

    finals = {}
    for setting in ("learning_rate=1e-2", "learning_rate=1e-5"):
        finals[setting] = [
            json.loads((out / setting / f"seed{seed}" / "summary.json").read_text())["final_eval_mean"]
            for seed in range(4)
        ]
    by_name = {s["name"]: s for s in result["settings"]}
    assert [s["name"] for s in result["settings"]] == sorted(finals, key=lambda k: -middle_half_mean(finals[k]))
    assert result["settings"][0]["name"] == "learning_rate=1e-2"  # a rate 1000x too small barely learns
    for name, scores in finals.items():
        stats = by_name[name]
        assert stats["mean"]["value"] == pytest.approx(np.mean(scores))
        assert stats["median"]["value"] == pytest.approx(np.median(scores))
        assert stats["iqm"]["value"] == pytest.approx(middle_half_mean(scores))
        for key, statistic in (("iqm", middle_half_mean), ("mean", np.mean)):
            exact = exact_bootstrap(scores, statistic)  # 4^4 = 256 resamples: the bootstrap distribution itself
            low, high = stats[key]["ci"]
            assert np.quantile(exact, 0.01) - 1e-9 <= low <= np.quantile(exact, 0.04) + 1e-9
            assert np.quantile(exact, 0.96) - 1e-9 <= high <= np.quantile(exact, 0.99) + 1e-9
    (p,) = result["probability_of_improvement"]
    x, y = np.array(finals[p["x"]]), np.array(finals[p["y"]])
    assert p["value"] == pytest.approx(((x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])).mean())


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in WALL_TIME_COLUMNS} for row in csv.DictReader(handle)]


def test_a_sweep_killed_with_sigkill_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path):
    args = ["a2c", "CartPole-v1", "--seeds", "0-1", "--steps", "12000", "--workers", "2", "--quiet"]
    args += ["--set", "learning_rate=1e-2,3e-3", "--set", "checkpoint_every=3", "--set", "eval_every=2048"]
    runs = [f"learning_rate={lr}/seed{seed}" for lr in ("1e-2", "3e-3") for seed in (0, 1)]
    assert main(["sweep", *args, "--out", str(tmp_path / "whole")]) == 0

    killed = tmp_path / "killed"
    kill_sweep_midway(args, killed, runs, timeout=120)
    unfinished = [r for r in runs if not (killed / r / "summary.json").exists()]
    assert unfinished, "the sweep ended before it could be killed"

    assert main(["sweep", "--resume", str(killed), "--workers", "2", "--quiet"]) == 0
    for run in runs:
        assert read_rows(killed / run / "metrics.csv") == read_rows(tmp_path / "whole" / run / "metrics.csv"), run
        summaries = [json.loads((root / run / "summary.json").read_text()) for root in (killed, tmp_path / "whole")]
        assert summaries[0]["final_eval_mean"] == summaries[1]["final_eval_mean"]
    reports = [policygrad.report(root, reps=500) for root in (tmp_path / "whole", killed)]
    assert [(s["name"], s["iqm"]) for s in reports[0]["settings"]] == [
        (s["name"], s["iqm"]) for s in reports[1]["settings"]
    ]


def test_resume_with_more_seeds_trains_only_the_new_runs_and_keeps_the_finished_ones(tmp_path, capsys):
    out = tmp_path / "sweep"
    tiny = ["--set", "eval_every=1024", "--set", "eval_episodes=2", "--steps", "1024", "--quiet"]
    assert main(["sweep", "a2c", "CartPole-v1", "--seeds", "0-1", "--workers", "1", "--out", str(out), *tiny]) == 0
    finished = {seed: (out / "default" / f"seed{seed}" / "summary.json").read_bytes() for seed in (0, 1)}
    assert main(["sweep", "--resume", str(out), "--seeds", "0-2", "--steps", "9"]) == 1  # the plan's budget stays
    assert "--resume DIR continues" in capsys.readouterr().err

    assert main(["sweep", "--resume", str(out), "--seeds", "1-2", "--workers", "1", "--quiet"]) == 0
    plan = json.loads((out / "sweep.json").read_text())
    assert plan["seeds"] == [0, 1, 2] and [run["seed"] for run in plan["runs"]] == [0, 1, 2]
    for seed, summary in finished.items():
        assert (out / "default" / f"seed{seed}" / "summary.json").read_bytes() == summary  # not trained again
    new = json.loads((out / "default" / "seed2" / "summary.json").read_text())
    config = json.loads((out / "default" / "seed2" / "config.json").read_text())["config"]
    assert new["env_steps"] >= 1024 and config["seed"] == 2
