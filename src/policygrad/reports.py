"""Reports of sweeps: final returns as mean, median and IQM with stratified bootstrap CIs (rliable).

``policygrad report DIR [DIR2 …]`` reads the sweep folders written by :mod:`policygrad.sweeps`
and, per setting, summarises the final deterministic evaluation of every finished run
(``summary.json``'s ``final_eval_mean``) the way Agarwal et al. (2021, "Deep RL at the Edge
of the Statistical Precipice") recommend: the interquartile mean (IQM, the mean of the
middle 50 % of runs), with 95 % percentile confidence intervals from a stratified
bootstrap over runs, next to the mean and the median; for two or more settings, the
probability that a run of one beats a run of the other. The settings are ranked by IQM.
It writes ``report.md``, ``report.json`` and ``learning_curves.png`` (IQM of the
evaluation return against env steps, with its CI band).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from policygrad.checkpoint import write_atomic
from policygrad.errors import PolicygradError
from policygrad.run_log import read_metrics
from policygrad.runs import SUMMARY_FILE
from policygrad.sweeps import read_plan

#: The statistics of each setting's final returns, in the order ``aggregates`` returns them.
STATISTICS = ("mean", "median", "iqm")
CONFIDENCE = 0.95


def iqm(scores: np.ndarray, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the middle 50 % (25 % trimmed from each end), rliable's ``aggregate_iqm``."""
    from scipy.stats import trim_mean

    return trim_mean(scores, proportiontocut=0.25, axis=axis)


def aggregates(scores: np.ndarray) -> np.ndarray:
    """``[mean, median, IQM]`` of ``scores`` (runs × 1), the function the bootstrap resamples."""
    return np.array([np.mean(scores), np.median(scores), iqm(scores)])


@contextlib.contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    # rliable's StratifiedBootstrap draws its indices from numpy's global generator.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def rliable() -> Any:
    try:
        from rliable import library, metrics
    except ImportError:
        raise PolicygradError("policygrad report needs rliable: pip install 'policygrad[stats]'") from None
    return library, metrics


def interval_estimates(scores: Sequence[float], reps: int = 2000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Mean, median and IQM of ``scores`` (one per run), each with its 95 % stratified bootstrap CI."""
    library, _ = rliable()
    data = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    with numpy_seed(seed):
        points, intervals = library.get_interval_estimates(
            {"s": data}, aggregates, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return {
        name: {"value": float(points["s"][i]), "ci": [float(intervals["s"][0][i]), float(intervals["s"][1][i])]}
        for i, name in enumerate(STATISTICS)
    }


def probability_of_improvement(
    x: Sequence[float], y: Sequence[float], reps: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """P(a run of X scores above a run of Y; ties count half), with its 95 % bootstrap CI (each side resampled)."""
    library, metrics = rliable()
    pair = [np.asarray(x, dtype=np.float64).reshape(-1, 1), np.asarray(y, dtype=np.float64).reshape(-1, 1)]

    def statistic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(a, b)])

    with numpy_seed(seed):
        points, intervals = library.get_interval_estimates(
            {"p": pair}, statistic, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return {"value": float(points["p"][0]), "ci": [float(intervals["p"][0][0]), float(intervals["p"][1][0])]}


def curve_estimates(values: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Learning curves ``values`` (runs, P) → the IQM at each of the P points and its 95 % CI, ``(iqm, low, high)``."""
    library, _ = rliable()
    with numpy_seed(seed):
        points, intervals = library.get_interval_estimates(
            {"c": values[:, None, :]}, lambda x: iqm(x[:, 0, :], axis=0), reps=reps, confidence_interval_size=CONFIDENCE
        )
    return points["c"], intervals["c"][0], intervals["c"][1]


def collect_settings(sweep_dirs: Sequence[Path], target: float | None = None) -> list[dict[str, Any]]:
    """Every setting of every sweep with its finished runs' final returns, curves and times to ``target``."""
    settings = []
    for sweep_dir in sweep_dirs:
        plan = read_plan(sweep_dir)
        for setting in plan["settings"]:
            runs, unfinished = [], []
            for run in (r for r in plan["runs"] if r["setting"] == setting["name"]):
                run_dir = Path(sweep_dir) / run["dir"]
                try:
                    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
                except (OSError, ValueError):
                    unfinished.append(run["dir"])
                    continue
                runs.append(_run_record(run, run_dir, summary, target))
            settings.append(
                {
                    "name": setting["name"],
                    "sweep": str(sweep_dir),
                    "algo": plan["algo"],
                    "env_id": plan["env_id"],
                    "overrides": setting["overrides"],
                    "runs": runs,
                    "unfinished": unfinished,
                }
            )
    names = [s["name"] for s in settings]
    for s in settings:  # settings of several sweeps are told apart by their sweep's folder
        if names.count(s["name"]) > 1:
            s["name"] = f"{Path(s['sweep']).name}/{s['name']}"
    return settings


def _run_record(run: dict[str, Any], run_dir: Path, summary: dict[str, Any], target: float | None) -> dict[str, Any]:
    curve = [
        (int(row["env_step"]), float(row["eval_return_mean"]), float(row["wall_time"]))
        for row in read_metrics(run_dir)
        if row.get("eval_return_mean")
    ]
    goal = target if target is not None else summary.get("target_return")
    reached = next(((step, seconds) for step, value, seconds in curve if goal is not None and value >= goal), None)
    return {
        "seed": run["seed"],
        "dir": run["dir"],
        "final_return": float(summary["final_eval_mean"]),
        "env_steps": summary.get("env_steps"),
        "train_seconds": summary.get("train_seconds"),
        "target": goal,
        "steps_to_target": reached[0] if reached else None,
        "seconds_to_target": reached[1] if reached else None,
        "curve": [[step, value] for step, value, _ in curve],
    }


def _median_with_misses(values: list[float | None]) -> float | None:
    """The median where a run that never reached the target counts as infinitely slow (None if that is the median)."""
    ordered = sorted(math.inf if v is None else v for v in values)
    middle = float(np.median(ordered)) if ordered else math.inf  # a median between a time and inf is inf
    return None if math.isinf(middle) else middle


def report(
    sweep_dirs: Sequence[str | Path] | str | Path,
    *,
    out: str | Path | None = None,
    target: float | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Summarise one or more sweep folders; writes report.md, report.json and learning_curves.png into ``out``.

    ``out`` defaults to the first sweep folder; ``target`` overrides the runs' own
    ``target_return`` for the steps and seconds to target; ``reps`` bootstrap resamples,
    drawn from ``seed`` (the same inputs give the same intervals). Returns the JSON as a dict.
    """
    dirs = [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, Path)) else [Path(d) for d in sweep_dirs]
    if not dirs:
        raise PolicygradError("name at least one sweep folder: policygrad report DIR")
    if reps < 100:
        raise PolicygradError(f"--reps must be at least 100 for a 95 % interval (got {reps})")
    settings = collect_settings(dirs, target)
    scored = [s for s in settings if s["runs"]]
    if not scored:
        raise PolicygradError(f"no finished runs in {', '.join(map(str, dirs))}; run or resume the sweep first")
    for s in scored:
        finals = [r["final_return"] for r in s["runs"]]
        s.update(interval_estimates(finals, reps, seed))
        goal = s["runs"][0]["target"]
        if goal is not None:
            s["to_target"] = {
                "target": goal,
                "reached": sum(r["steps_to_target"] is not None for r in s["runs"]),
                "median_steps": _median_with_misses([r["steps_to_target"] for r in s["runs"]]),
                "median_seconds": _median_with_misses([r["seconds_to_target"] for r in s["runs"]]),
            }
    scored.sort(key=lambda s: -s["iqm"]["value"])
    for rank, s in enumerate(scored, 1):
        s["rank"] = rank
    improvements = [
        {"x": a["name"], "y": b["name"], **probability_of_improvement(_finals(a), _finals(b), reps, seed)}
        for a, b in itertools.combinations(scored, 2)
    ]
    out_dir = Path(out) if out is not None else dirs[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    from policygrad.report_output import markdown, plot_curves

    figure = plot_curves(scored, out_dir / "learning_curves.png", lambda v: curve_estimates(v, min(reps, 1000), seed))
    result = {
        "sources": [str(d) for d in dirs],
        "metric": "final deterministic evaluation return (summary.json final_eval_mean)",
        "confidence": CONFIDENCE,
        "bootstrap": {"method": "stratified percentile bootstrap over runs (rliable)", "reps": reps, "seed": seed},
        "settings": scored + [s for s in settings if not s["runs"]],
        "probability_of_improvement": improvements,
        "figures": [figure.name] if figure else [],
    }
    write_atomic(out_dir / "report.json", json.dumps(result, indent=2).encode())
    write_atomic(out_dir / "report.md", markdown(result).encode())
    return result


def _finals(setting: dict[str, Any]) -> list[float]:
    return [r["final_return"] for r in setting["runs"]]


__all__ = ["STATISTICS", "aggregates", "collect_settings", "interval_estimates", "iqm", "probability_of_improvement"]
__all__ += ["curve_estimates", "report"]
