"""Chain: the five algorithms on CartPole-v1 through ``policygrad.train``, side by side.

Each algorithm runs with its shipped preset (if any) on the same small budget of
environment steps, with ``log_gradient_variance`` on, for a few seeds. Curves against
environment steps and against training wall-clock, the gradient's signal-to-noise ratio,
and whether each step of the chain beat the previous one — reported as measured.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from policygrad.algorithms import ADDS, ALGORITHMS
from policygrad.experiments.common import COLORS, Report, figure

SUMMARY = "the five algorithms on CartPole-v1, several seeds: return vs env steps and vs wall-clock"
ENV_ID = "CartPole-v1"
STEPS = 12_000
SEEDS = 2


def train_one(algo: str, seed: int, steps: int, out: Path) -> dict[str, Any]:
    """One short run; returns its per-update curves and summary."""
    from policygrad import train

    run_dir = out / f"{algo}-seed{seed}"
    if run_dir.exists():  # a rerun into the same folder starts afresh
        import shutil

        shutil.rmtree(run_dir)
    _, history = train(
        algo,
        ENV_ID,
        out=run_dir,
        quiet=True,
        seed=seed,
        total_steps=steps,
        eval_every=0,
        eval_episodes=5,
        target_return=None,
        log_gradient_variance=True,
        checkpoint_every=0,
        checkpoint_seconds=1e9,
    )
    summary = json.loads((run_dir / "summary.json").read_text())

    def column(key: str) -> np.ndarray:
        return np.array([np.nan if h.get(key) is None else float(h[key]) for h in history])

    return {
        "env_step": column("env_step"),
        "wall_time": column("wall_time"),
        "return": column("episodic_return_mean"),
        "grad_snr": column("grad_snr"),
        "grad_variance": column("grad_variance"),
        "final_eval_mean": summary["final_eval_mean"],
        "train_seconds": summary["train_seconds"],
        "steps_per_second": summary["steps_per_second"],
    }


def on_grid(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``y(x)`` interpolated at ``grid`` (NaN before the first finite point)."""
    ok = np.isfinite(y)
    if ok.sum() == 0:
        return np.full_like(grid, np.nan, dtype=float)
    out = np.interp(grid, x[ok], y[ok])
    out[grid < x[ok][0]] = np.nan
    return out


def rolling_median(x: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Median of each point and the ones before it, over a window of ``fraction`` of the series."""
    window = max(1, int(len(x) * fraction))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows that are all NaN stay NaN
        return np.array([np.nanmedian(x[max(0, i - window + 1) : i + 1]) for i in range(len(x))])


def run(
    seed: int, quick: bool = False, out: Path | None = None, algorithms: list[str] | None = None, **_: Any
) -> Report:
    """Train ``algorithms`` (default: all five, in chain order) and compare them."""
    steps, seeds = (1_000, 1) if quick else (STEPS, SEEDS)
    out = Path(out if out is not None else "runs/experiments/chain") / "runs"
    names = list(algorithms or ALGORITHMS)
    runs = {algo: [train_one(algo, seed + k, steps, out) for k in range(seeds)] for algo in names}

    grid = np.linspace(0, steps, 61)
    warnings.filterwarnings("ignore", "Mean of empty slice|All-NaN slice", RuntimeWarning)  # before the first episode
    fig, axes = figure(1, 3, width=4.8)
    summary: dict[str, dict[str, float]] = {}
    for algo, results in runs.items():
        color = COLORS[algo]
        curves = np.array([on_grid(r["env_step"], r["return"], grid) for r in results])
        axes[0, 0].plot(grid, np.nanmean(curves, 0), color=color, label=algo)
        if seeds > 1:
            axes[0, 0].fill_between(grid, np.nanmin(curves, 0), np.nanmax(curves, 0), color=color, alpha=0.15)
        for k, r in enumerate(results):
            axes[0, 1].plot(r["wall_time"], r["return"], color=color, alpha=0.9, label=algo if k == 0 else None)
        snr = np.array([on_grid(r["env_step"], rolling_median(r["grad_snr"]), grid) for r in results])
        axes[0, 2].semilogy(grid, np.nanmean(snr, 0), color=color, label=algo)
        last = [
            r["return"][np.isfinite(r["return"])][-1] if np.isfinite(r["return"]).any() else np.nan for r in results
        ]
        summary[algo] = {
            "final_training_return_mean": float(np.nanmean(last)),
            "final_eval_mean": float(np.mean([r["final_eval_mean"] for r in results])),
            "return_area_per_step": float(np.nanmean(np.nan_to_num(curves, nan=0.0))),
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in results])),
            "steps_per_second_mean": float(np.mean([r["steps_per_second"] for r in results])),
            "grad_snr_median": float(np.nanmedian(np.concatenate([r["grad_snr"] for r in results]))),
            "grad_variance_median": float(np.nanmedian(np.concatenate([r["grad_variance"] for r in results]))),
        }
    axes[0, 0].set(title=f"training return vs env steps ({seeds} seeds)", xlabel="environment steps", ylabel="return")
    axes[0, 1].set(title="training return vs wall-clock", xlabel="training seconds (this machine)", ylabel="return")
    axes[0, 2].set(
        title="gradient SNR across minibatches (rolling median)", xlabel="environment steps", ylabel="‖ḡ‖² / tr Cov"
    )
    for ax in axes[0]:
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"The chain on {ENV_ID}: {steps:,} steps per run (seeds {seed}–{seed + seeds - 1})")

    steps_compared = []
    for previous, current in zip(names, names[1:], strict=False):
        gain = summary[current]["return_area_per_step"] - summary[previous]["return_area_per_step"]
        steps_compared.append({"from": previous, "to": current, "adds": ADDS[current], "area_gain": gain})
    numbers = {"env_id": ENV_ID, "steps_per_run": steps, "seeds": [seed + k for k in range(seeds)], "algorithms": {}}
    for algo in names:
        numbers["algorithms"][algo] = {k: v for k, v in summary[algo].items() if "seconds" not in k}
    numbers["chain_steps"] = steps_compared
    timing = {algo: {k: v for k, v in summary[algo].items() if "seconds" in k} for algo in names}

    table = "| algorithm | adds | final return | eval (5 ep.) | mean return over the run | median SNR | s/run |\n"
    table += "|---|---|---|---|---|---|---|\n"
    for algo in names:
        s, adds = summary[algo], ADDS[algo].replace("|", "∣")  # a "|" would split the table cell
        table += (
            f"| {algo} | {adds} | {s['final_training_return_mean']:.1f} | {s['final_eval_mean']:.1f} | "
            f"{s['return_area_per_step']:.1f} | {s['grad_snr_median']:.3f} | {s['train_seconds_mean']:.1f} |\n"
        )

    def verdict(change: dict[str, Any]) -> str:
        base = abs(summary[change["from"]]["return_area_per_step"])
        if change["area_gain"] > 0.1 * base:
            return "a gain"
        if change["area_gain"] < -0.1 * base:
            return "worse at this budget"
        return "no clear difference (within 10 %)"

    verdicts = "\n".join(
        f"- {c['from']} → {c['to']} ({c['adds']}): mean return over the run "
        f"{summary[c['from']]['return_area_per_step']:.1f} → {summary[c['to']]['return_area_per_step']:.1f}, "
        f"{verdict(c)}"
        for c in steps_compared
    )
    markdown = f"""# The chain on {ENV_ID}

Each algorithm trained through `policygrad.train` with its shipped preset (budget cut to
{steps:,} environment steps; {seeds} seed(s); the gradient's SNR logged with
`log_gradient_variance`). "Final return" is the mean training return of the last 20 episodes;
"eval" a deterministic 5-episode evaluation; "mean return over the run" the area under the
return-vs-steps curve divided by the budget (sample efficiency).

{table}
Step by step:

{verdicts}

This budget is far below what the presets are tuned for, and {seeds} seed(s) are few: the
ordering can change with more steps or seeds. The gradient SNR is measured with each
algorithm's own advantage (normalised per minibatch for PPO), so it compares the noise each
one actually steps on. Wall-clock times are this machine's and depend on its load.
"""
    return Report(fig, numbers, markdown, timing)
