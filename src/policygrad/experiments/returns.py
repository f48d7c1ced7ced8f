"""Returns: the Monte-Carlo return G_0 that REINFORCE learns from is an unbiased but very noisy V(s_0).

Russell & Norvig's 4×3 gridworld (slip 0.2, no step cost, exits +1/−1) with γ = 0.9:
histograms of many sampled returns G_0 beside the exact V(s_0), for the uniform policy
and after REINFORCE has trained it, with variance and standard error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policygrad.advantages import returns_to_go
from policygrad.exact import episodes_to_rollout, gridworld, sample_episodes, sample_gradients
from policygrad.experiments.common import Report, figure

SUMMARY = "REINFORCE on a gridworld, γ = 0.9: histogram of sampled returns G_0 against the exact V(s_0)"
LEARNING_RATE = 1.0
EPISODES_PER_UPDATE = 16


def return_stats(mdp: Any, theta: np.ndarray, episodes: int, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """G_0 of ``episodes`` sampled episodes (by the library's ``returns_to_go``) and their statistics."""
    sampled = sample_episodes(mdp, theta, episodes, max_steps=500, seed=seed)
    rollout = episodes_to_rollout(mdp, theta, sampled, critic=None)
    g0 = returns_to_go(rollout.rewards, rollout.terminated, rollout.done, mdp.gamma)[:, 0].numpy()
    exact = mdp.objective(theta)
    std_error = g0.std(ddof=1) / np.sqrt(episodes)
    return g0, {
        "exact_value": exact,
        "mean": float(g0.mean()),
        "variance": float(g0.var(ddof=1)),
        "std": float(g0.std(ddof=1)),
        "std_error": float(std_error),
        "z": float((g0.mean() - exact) / std_error),
        "mean_length": float(sampled.lengths.double().mean()),
        "episodes_for_std_error_0.01": int(np.ceil(g0.var(ddof=1) / 0.01**2)),
    }


def run(seed: int, quick: bool = False, **_: Any) -> Report:
    episodes, updates = (1_000, 10) if quick else (20_000, 150)
    mdp = gridworld(step_reward=0.0, gamma=0.9)
    theta = mdp.zeros()
    start_returns, start = return_stats(mdp, theta, episodes, seed)
    curve, batch_means = [mdp.objective(theta)], []
    for k in range(updates):
        # REINFORCE: the mean of per-episode estimates Σ_t γ^t G_t ∇log π(a_t|s_t).
        grads = sample_gradients(mdp, theta, "reinforce", EPISODES_PER_UPDATE, seed=seed * 100_003 + k, max_steps=500)
        theta = theta + LEARNING_RATE * grads.mean(0).numpy()
        curve.append(mdp.objective(theta))
        batch_means.append(float(return_stats(mdp, theta, EPISODES_PER_UPDATE, seed * 100_003 + k)[0].mean()))
    end_returns, end = return_stats(mdp, theta, episodes, seed + 1)

    fig, axes = figure(1, 3, width=4.6)
    for ax, g0, stats, title in (
        (axes[0, 0], start_returns, start, "uniform policy"),
        (axes[0, 1], end_returns, end, f"after {updates} REINFORCE updates"),
    ):
        ax.hist(g0, bins=60, color="C0", alpha=0.75)
        ax.axvline(stats["exact_value"], color="black", lw=2, label=f"exact V(s₀) = {stats['exact_value']:.3f}")
        ax.axvline(stats["mean"], color="C3", ls="--", label=f"mean = {stats['mean']:.3f} ± {stats['std_error']:.3f}")
        ax.set(title=f"{title}: G₀ of {episodes:,} episodes", xlabel="sampled return G₀", ylabel="episodes")
        ax.plot([], [], " ", label=f"std of G₀ = {stats['std']:.3f}")
        ax.legend(fontsize=8, loc="best")
    ax = axes[0, 2]
    ax.plot(
        np.arange(1, updates + 1),
        batch_means,
        ".",
        color="C0",
        ms=3,
        label=f"mean G₀ of the {EPISODES_PER_UPDATE}-episode batch",
    )
    ax.plot(curve, color="black", label="exact J(θ) = V(s₀)")
    ax.set(title="what REINFORCE sees vs the truth", xlabel="update", ylabel="return")
    ax.legend(fontsize=8)
    fig.suptitle(f"Sampled returns vs the exact value, 4×3 gridworld, γ = {mdp.gamma} (seed {seed})")

    numbers = {
        "mdp": "gridworld 4x3, slip 0.2, no step cost, exits +1/-1",
        "gamma": mdp.gamma,
        "episodes": episodes,
        "updates": updates,
        "episodes_per_update": EPISODES_PER_UPDATE,
        "learning_rate": LEARNING_RATE,
        "uniform_policy": start,
        "trained_policy": end,
        "objective_curve_every_10": curve[::10],
    }
    table = "| policy | exact V(s₀) | mean G₀ ± s.e. | std of G₀ | z | episodes for s.e. 0.01 |\n" + "|---" * 6 + "|\n"
    for label, st in (("uniform", start), (f"after {updates} updates", end)):
        table += (
            f"| {label} | {st['exact_value']:.4f} | {st['mean']:.4f} ± {st['std_error']:.4f} | {st['std']:.3f} "
            f"| {st['z']:.2f} | {st['episodes_for_std_error_0.01']:,} |\n"
        )
    markdown = f"""# Returns: unbiased, but noisy

REINFORCE replaces the unknown Q(s, a) by the sampled return G_t. On the 4×3 gridworld
(γ = {mdp.gamma}), {episodes:,} sampled returns G₀ (library `returns_to_go`) are compared with the
exact V(s₀) from `TabularMDP` (a linear solve):

{table}
The mean agrees with V(s₀) within its standard error (unbiased), but one return is spread
over ±{start["std"]:.2f} around a value of {start["exact_value"]:.2f}: the return of one episode
is a poor estimate of what the policy is worth. The right panel shows the
{EPISODES_PER_UPDATE}-episode batch means REINFORCE learns from, scattered around the exact J(θ):
this is the variance that baselines and critics attack.
"""
    return Report(fig, numbers, markdown)
