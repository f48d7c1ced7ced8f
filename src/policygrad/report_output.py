"""What ``policygrad report`` writes besides report.json: the Markdown report and the learning-curve figure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: At most this many points per learning curve (its bootstrap runs once per point and resample).
MAX_CURVE_POINTS = 200


def curve_grid(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The runs' evaluation curves on one grid of env steps: ``(steps (P,), returns (runs, P))``.

    Each run holds its last evaluation until its next one (and after it stopped, e.g. on
    reaching its target); the grid starts where every run has been evaluated once.
    """
    curves = [np.asarray(r["curve"], dtype=np.float64).reshape(-1, 2) for r in runs if r["curve"]]
    if len(curves) < len(runs) or not curves:
        return np.zeros(0), np.zeros((len(runs), 0))
    start = max(c[0, 0] for c in curves)
    steps = np.unique(np.concatenate([c[:, 0] for c in curves]))
    steps = steps[steps >= start]
    if len(steps) > MAX_CURVE_POINTS:
        steps = steps[np.linspace(0, len(steps) - 1, MAX_CURVE_POINTS).round().astype(int)]
    values = np.stack([c[np.searchsorted(c[:, 0], steps, side="right") - 1, 1] for c in curves])
    return steps, values


#: (runs, P) returns → (IQM (P,), lower (P,), upper (P,)): the curve and its confidence band.
CurveEstimator = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def plot_curves(settings: list[dict[str, Any]], path: Path, estimate: CurveEstimator) -> Path | None:
    """``learning_curves.png``: per setting, the IQM over runs of the evaluation return and its CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    drawn = False
    for i, setting in enumerate(settings):
        steps, values = curve_grid(setting["runs"])
        if steps.size == 0:
            continue
        middle, low, high = estimate(values)
        color = f"C{i % 10}"
        label = f"{setting['name']} ({len(setting['runs'])} runs)"
        ax.plot(steps, middle, color=color, lw=1.6, drawstyle="steps-post", label=label)
        ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0, step="post")
        setting["curve_iqm"] = {"env_step": steps.tolist(), "iqm": middle.tolist(), "ci": [low.tolist(), high.tolist()]}
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (IQM, 95 % CI)")
    ax.set_title(f"{settings[0]['algo']} on {settings[0]['env_id']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _estimate(stat: dict[str, Any]) -> str:
    low, high = stat["ci"]
    return f"{stat['value']:.1f} [{low:.1f}, {high:.1f}]"


def markdown(result: dict[str, Any]) -> str:
    """report.md: the ranked table, times to target, probabilities of improvement and the figure."""
    pct = round(result["confidence"] * 100)
    lines = [
        "# Sweep report",
        "",
        f"Sources: {', '.join(result['sources'])}. Metric: {result['metric']}; {pct} % confidence intervals "
        f"from a {result['bootstrap']['method']}, {result['bootstrap']['reps']} resamples.",
        "",
        f"| rank | setting | runs | IQM [{pct} % CI] | mean [{pct} % CI] | median [{pct} % CI] |",
        "|---:|---|---:|---|---|---|",
    ]
    for s in result["settings"]:
        if not s["runs"]:
            lines.append(f"| – | {s['name']} | 0 | no finished run | | |")
            continue
        runs = f"{len(s['runs'])}" + (f" (+{len(s['unfinished'])} unfinished)" if s["unfinished"] else "")
        lines.append(
            f"| {s['rank']} | {s['name']} | {runs} | {_estimate(s['iqm'])} | {_estimate(s['mean'])} "
            f"| {_estimate(s['median'])} |"
        )
    timed = [s for s in result["settings"] if s.get("to_target")]
    if timed:
        lines += [
            "",
            "| setting | target | reached | median env steps | median train seconds |",
            "|---|---:|---:|---:|---:|",
        ]
        for s in timed:
            t = s["to_target"]
            steps = f"{t['median_steps']:,.0f}" if t["median_steps"] is not None else "not reached by half"
            seconds = f"{t['median_seconds']:.1f}" if t["median_seconds"] is not None else "–"
            lines.append(f"| {s['name']} | {t['target']:g} | {t['reached']}/{len(s['runs'])} | {steps} | {seconds} |")
        lines += ["", "(A run that never reached the target counts as infinitely slow in the medians.)"]
    if result["probability_of_improvement"]:
        lines += ["", f"| P(X > Y) [{pct} % CI] | X | Y |", "|---|---|---|"]
        for p in result["probability_of_improvement"]:
            lines.append(f"| {p['value']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}] | {p['x']} | {p['y']} |")
        lines += ["", "P(X > Y): the chance that a run of X ends above a run of Y (ties count half)."]
    for figure in result["figures"]:
        lines += ["", f"![learning curves]({figure})"]
    return "\n".join(lines) + "\n"


__all__ = ["MAX_CURVE_POINTS", "CurveEstimator", "curve_grid", "markdown", "plot_curves"]
