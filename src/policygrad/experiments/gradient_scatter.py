"""Gradient scatter: single-sample policy-gradient estimates of a two-armed softmax bandit vs the exact ∇J.

At θ = (0, 0) with arm 1 better, ∇J points along (1, −1)/√2. Every single-pull estimate
R (e_a − π) lies on that same line (softmax ignores a shift of both logits), but a third
of them point the wrong way: those that pulled the worse arm and still got a positive
reward, or the better arm and a negative one. Exactly ½ Φ(0.2/0.5) + ½ Φ(−1/0.5) = 33.9 %
(``numbers.exact_fraction_pointing_the_wrong_way``); sampled, 34.0 % of the 200,000
estimates of ``policygrad experiment gradient-scatter --seed 0``
(``numbers.fraction_pointing_the_wrong_way``). Only their average finds the direction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from policygrad.exact import TabularMDP, bandit, sample_gradients
from policygrad.experiments.common import Report, figure

SUMMARY = "two-armed bandit: single-sample gradient estimates in the θ1–θ2 plane against the exact gradient"
MEANS = (1.0, 0.2)
NOISE_STD = 0.5


def angle_degrees(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Angle between each row of ``vectors`` (n, 2) and ``reference`` (2,), in degrees."""
    cos = vectors @ reference / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference) + 1e-300)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def exact_wrong_way_fraction(policy: np.ndarray, baseline: float) -> float:
    """P[(R − b)(e_a − π) · ∇J < 0] for the two-armed Gaussian bandit, ``policy`` (2,) = π, ∇J ∝ (1, −1).

    (e_a − π) · (1, −1) is positive for arm 1 and negative for arm 2, so an estimate points the
    wrong way when arm 1 pays less than b or arm 2 more: π₁ Φ((b − μ₁)/σ) + π₂ (1 − Φ((b − μ₂)/σ)).
    """

    def normal_cdf(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    return float(
        policy[0] * normal_cdf((baseline - MEANS[0]) / NOISE_STD)
        + policy[1] * (1.0 - normal_cdf((baseline - MEANS[1]) / NOISE_STD))
    )


def run(seed: int, quick: bool = False, **_: Any) -> Report:
    runs, per_run = (20, 100) if quick else (200, 1_000)
    mdp = bandit(MEANS, noise="gaussian", std=NOISE_STD, action_names=["arm 1", "arm 2"])
    theta = mdp.zeros()
    exact = mdp.gradient(theta)[0]
    direction = exact / np.linalg.norm(exact)
    # The same bandit as a continuing one-state MDP with γ = 0.9: J scales by 1/(1 − γ), the direction does not.
    continuing = TabularMDP(np.ones((1, 2, 1)), np.array([MEANS]), np.array([1.0]), 0.9)
    continuing_direction = continuing.gradient(theta)[0] / np.linalg.norm(continuing.gradient(theta)[0])
    names = ("reinforce", "constant-baseline")
    estimates = {
        name: sample_gradients(mdp, theta, name, runs * per_run, seed=seed)[:, 0].numpy().reshape(runs, per_run, 2)
        for name in names
    }
    # Running averages of each independent run: (runs, n, 2).
    averages = {name: np.cumsum(g, axis=1) / np.arange(1, per_run + 1)[None, :, None] for name, g in estimates.items()}
    angles = {name: angle_degrees(avg.reshape(-1, 2), exact).reshape(runs, per_run) for name, avg in averages.items()}
    errors = {name: np.linalg.norm(avg - exact, axis=2) / np.linalg.norm(exact) for name, avg in averages.items()}
    n = np.arange(1, per_run + 1)
    plain = estimates["reinforce"].reshape(-1, 2)
    wrong_way = {name: float(np.mean(g.reshape(-1, 2) @ exact < 0)) for name, g in estimates.items()}
    policy = np.asarray(mdp.policy(theta))[0]
    baselines = {"reinforce": 0.0, "constant-baseline": mdp.objective(theta)}
    exact_wrong_way = {name: exact_wrong_way_fraction(policy, baselines[name]) for name in names}
    colors = {"reinforce": "C3", "constant-baseline": "C2"}

    fig, axes = figure(1, 3, width=4.6)
    ax = axes[0, 0]
    shown = plain[:2_000]
    ax.scatter(shown[:, 0], shown[:, 1], s=6, alpha=0.25, color="C0", label="single-pull estimates")
    ax.plot(*averages["reinforce"][0].T, color="C3", lw=1, label="running average (one run)")
    ax.plot(*averages["reinforce"][0, -1], "o", color="C3", ms=6)
    scale = np.abs(shown).max()
    ax.annotate("", xy=direction * scale * 0.8, xytext=(0, 0), arrowprops=dict(arrowstyle="->", lw=2, color="black"))
    ax.plot([], [], color="black", lw=2, label="exact ∇J direction")
    ax.axhline(0, color="gray", lw=0.5)
    ax.axvline(0, color="gray", lw=0.5)
    ax.set(title="single-sample ∇J estimates", xlabel="∂/∂θ₁", ylabel="∂/∂θ₂", aspect="equal")
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[0, 1]
    for name in names:
        ax.semilogx(n, angles[name].mean(0), color=colors[name], label=name)
    ax.set(
        title=f"angle(average of n, ∇J), mean of {runs} runs",
        xlabel="samples n",
        ylabel="degrees (= 180° × P(wrong way))",
        ylim=(-2, 92),
    )
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    for name in names:
        ax.loglog(n, np.median(errors[name], axis=0), color=colors[name], label=f"{name} (median)")
        std = np.sqrt(estimates[name].reshape(-1, 2).var(0, ddof=1).sum()) / np.linalg.norm(exact)
        ax.loglog(n, std / np.sqrt(n), ":", color=colors[name], lw=1)
    ax.plot([], [], "k:", lw=1, label="s.e. ∝ 1/√n")
    ax.set(title="relative error of the average", xlabel="samples n", ylabel="‖ḡₙ − ∇J‖ / ‖∇J‖")
    ax.legend(fontsize=8)
    fig.suptitle(f"Two-armed bandit, rewards {MEANS} + N(0, {NOISE_STD}²), θ = (0, 0) (seed {seed})")

    checkpoints = [c for c in (1, 10, 100, 1_000) if c <= per_run]
    numbers = {
        "means": list(MEANS),
        "noise_std": NOISE_STD,
        "runs": runs,
        "samples_per_run": per_run,
        "exact_gradient": exact,
        "exact_direction": direction,
        "continuing_gamma_0.9_direction": continuing_direction,
        "fraction_pointing_the_wrong_way": wrong_way,  # sampled, of runs × samples_per_run estimates
        "exact_fraction_pointing_the_wrong_way": exact_wrong_way,
        "off_line_max": float(np.abs(plain.sum(1)).max()),  # every estimate has g1 + g2 = 0
        "mean_angle_degrees": {
            name: {str(c): float(angles[name][:, c - 1].mean()) for c in checkpoints} for name in names
        },
        "median_relative_error": {
            name: {str(c): float(np.median(errors[name][:, c - 1])) for c in checkpoints} for name in names
        },
        "mean_of_all_estimates": {name: g.reshape(-1, 2).mean(0) for name, g in estimates.items()},
        "total_variance": {name: float(g.reshape(-1, 2).var(0, ddof=1).sum()) for name, g in estimates.items()},
    }
    angle = numbers["mean_angle_degrees"]
    markdown = f"""# Gradient scatter

A two-armed softmax bandit (rewards {MEANS} plus N(0, {NOISE_STD}²) noise) at θ = (0, 0). The exact
gradient from `TabularMDP.gradient` is {np.round(exact, 4).tolist()}, direction
{np.round(direction, 4).tolist()} (the same direction for the continuing one-state version with
γ = 0.9: {np.round(continuing_direction, 4).tolist()}).

Each single-pull REINFORCE estimate R (e_a − π) lies on the line g₁ + g₂ = 0 (a softmax is
unchanged by adding the same number to both logits), so the scatter is a line and the angle
between an average and ∇J is 0° or 180°. {wrong_way["reinforce"]:.1%} of the {runs * per_run:,} single
estimates point the wrong way (arm 2 pulled and a positive reward, or arm 1 and a negative one;
exactly {exact_wrong_way["reinforce"]:.1%}). Over {runs} independent runs, the mean
angle of the average of n estimates (180° × the chance it points the wrong way) is
{angle["reinforce"]["1"]:.0f}° at n = 1, {angle["reinforce"]["10"]:.1f}° at n = 10 and
{angle["reinforce"][str(checkpoints[-1])]:.1f}° at n = {checkpoints[-1]}; the error of the average
shrinks like 1/√n.

With a constant baseline b = J(θ) = {mdp.objective(theta):.2f}, an estimate points the wrong way only
when the noise makes arm 1 pay less than b or arm 2 more: {wrong_way["constant-baseline"]:.1%} do
(exactly {exact_wrong_way["constant-baseline"]:.1%}), and the total variance drops from
{numbers["total_variance"]["reinforce"]:.3f} to {numbers["total_variance"]["constant-baseline"]:.3f}.
"""
    return Report(fig, numbers, markdown)
