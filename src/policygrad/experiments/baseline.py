"""Baseline: with all returns positive, REINFORCE pushes up every sampled action; a baseline only the good ones.

A three-armed bandit paying 8, 6 and 3 (plus N(0, 1) noise). Without a baseline every
pull raises the probability of the arm just pulled — the better arms only win because
they are raised more. With a learned baseline b (regressed on the rewards by the
library's ``value_loss``, as REINFORCE + baseline does) only the arms that beat b go up.
Same learning rate, several seeds; the variance reduction factor is measured exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from policygrad.exact import bandit, check_estimator, episodes_to_rollout, per_episode_gradients, sample_episodes
from policygrad.experiments.common import Report, figure
from policygrad.losses import value_loss

SUMMARY = "bandit paying 8, 6, 3: learning curves with and without a baseline, and the variance reduction factor"
MEANS = (8.0, 6.0, 3.0)
NOISE_STD = 1.0
LEARNING_RATE = 0.02
BASELINE_LEARNING_RATE = 0.1


def learn(mdp: Any, pulls: int, runs: int, with_baseline: bool, generator: torch.Generator) -> dict[str, np.ndarray]:
    """``runs`` independent single-pull REINFORCE learners in parallel (one θ and one b each).

    Returns J(θ_k) (runs, pulls + 1), π(best) (runs, pulls + 1), whether each pull raised
    the pulled arm and which arm it was (runs, pulls), and ‖ĝ − ∇J(θ_k)‖² (runs, pulls).
    """
    theta = np.zeros((runs, *mdp.theta_shape))
    b = torch.zeros(runs, 1, dtype=torch.float64, requires_grad=True)
    rows = np.arange(runs)
    pi = mdp.policy(theta)[:, 0]
    objective, best_prob, raised, arms, sq_error = [pi @ np.array(MEANS)], [pi[:, 0]], [], [], []
    for _ in range(pulls):
        episodes = sample_episodes(mdp, theta, runs, 2, seed=generator)
        critic = torch.cat([b.detach(), torch.zeros(runs, 1, dtype=torch.float64)], 1) if with_baseline else None
        rollout = episodes_to_rollout(mdp, theta, episodes, critic)
        grad = per_episode_gradients(theta, rollout, 1.0, 1.0).numpy()
        sq_error.append(((grad - mdp.gradient(theta)) ** 2).sum((1, 2)))
        arm = episodes.actions[:, 0].numpy()
        theta = theta + LEARNING_RATE * grad
        new_pi = mdp.policy(theta)[:, 0]
        raised.append(new_pi[rows, arm] > pi[rows, arm])
        arms.append(arm)
        pi = new_pi
        objective.append(pi @ np.array(MEANS))
        best_prob.append(pi[:, 0])
        if with_baseline:  # the baseline learns after it was used: it never depends on the current action
            loss, _ = value_loss(b, rollout.rewards[:, :1], torch.ones(runs, 1, dtype=torch.bool))
            (step,) = torch.autograd.grad(loss, b)
            with torch.no_grad():
                b -= BASELINE_LEARNING_RATE * runs * step  # SGD on ½(b − R)² per learner (the loss averages runs)
    return {
        "objective": np.stack(objective, 1),
        "best_prob": np.stack(best_prob, 1),
        "raised": np.stack(raised, 1),
        "arms": np.stack(arms, 1),
        "sq_error": np.stack(sq_error, 1),
    }


def run(seed: int, quick: bool = False, **_: Any) -> Report:
    pulls, runs, check_samples = (30, 4, 500) if quick else (300, 50, 40_000)
    mdp = bandit(MEANS, noise="gaussian", std=NOISE_STD, action_names=["8", "6", "3"])
    generator = torch.Generator().manual_seed(seed)
    results = {
        label: learn(mdp, pulls, runs, with_baseline, generator)
        for label, with_baseline in (("no baseline", False), ("learned baseline", True))
    }
    theta0 = mdp.zeros()
    variances = {
        name: check_estimator(mdp, theta0, name, check_samples, seed=seed).total_variance
        for name in ("reinforce", "constant-baseline", "exact-baseline", "learned-baseline")
    }
    factors = {name: variances["reinforce"] / v for name, v in variances.items() if name != "reinforce"}
    during = {label: float(r["sq_error"].mean()) for label, r in results.items()}
    raised = {
        label: {mdp.action_names[a]: float(r["raised"][r["arms"] == a].mean()) for a in range(3)}
        for label, r in results.items()
    }

    fig, axes = figure(1, 3, width=4.6)
    x = np.arange(pulls + 1)
    for label, color in (("no baseline", "C3"), ("learned baseline", "C2")):
        curves = results[label]["objective"]
        axes[0, 0].plot(x, curves.mean(0), color=color, label=f"{label} (mean of {runs})")
        axes[0, 0].fill_between(x, *np.percentile(curves, [10, 90], axis=0), color=color, alpha=0.2)
        probs = results[label]["best_prob"]
        axes[0, 1].plot(x, probs.mean(0), color=color, label=label)
        axes[0, 1].fill_between(x, *np.percentile(probs, [10, 90], axis=0), color=color, alpha=0.2)
    axes[0, 0].axhline(max(MEANS), color="gray", ls=":", lw=1)
    axes[0, 0].set(title="exact J(θ) while learning (10–90 % band)", xlabel="pull", ylabel="expected reward")
    axes[0, 0].legend(fontsize=8)
    axes[0, 1].set(title="π(arm paying 8)", xlabel="pull", ylim=(0, 1))
    axes[0, 1].legend(fontsize=8)
    ax = axes[0, 2]
    width = 0.38
    for k, (label, color) in enumerate((("no baseline", "C3"), ("learned baseline", "C2"))):
        values = [raised[label][name] for name in mdp.action_names]
        ax.bar(np.arange(3) + (k - 0.5) * width, values, width, color=color, label=label)
    ax.set_xticks(range(3), [f"arm paying {name}" for name in mdp.action_names])
    ax.set(title="share of pulls that raised the pulled arm", ylim=(0, 1.25))
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    fig.suptitle(
        f"Baseline: variance ÷{factors['exact-baseline']:.1f} at θ = 0 with b = V, "
        f"÷{during['no baseline'] / during['learned baseline']:.1f} while learning (seed {seed})"
    )

    final = {label: float(r["objective"][:, -1].mean()) for label, r in results.items()}
    numbers = {
        "means": list(MEANS),
        "noise_std": NOISE_STD,
        "learning_rate": LEARNING_RATE,
        "baseline_learning_rate": BASELINE_LEARNING_RATE,
        "pulls": pulls,
        "runs": runs,
        "final_objective_mean": final,
        "final_best_prob_mean": {label: float(r["best_prob"][:, -1].mean()) for label, r in results.items()},
        "share_of_pulls_raising_the_pulled_arm": raised,
        "variance_at_theta0": variances,
        "variance_reduction_factor_at_theta0": factors,
        "mean_squared_gradient_error_while_learning": during,
        "variance_reduction_factor_while_learning": during["no baseline"] / during["learned baseline"],
    }
    markdown = f"""# Baseline

A bandit paying {MEANS} (+ N(0, {NOISE_STD}²)): every return is positive. Single-pull REINFORCE
(θ ← θ + {LEARNING_RATE} ∇log π(a)·A), {runs} seeds × {pulls} pulls, with A = R (no baseline) and
A = R − b with b learned by `value_loss` (learning rate {BASELINE_LEARNING_RATE}).

- **Without a baseline** every pull raised the pulled arm: {raised["no baseline"]["8"]:.0%} /
  {raised["no baseline"]["6"]:.0%} / {raised["no baseline"]["3"]:.0%} of the pulls of the arms paying
  8 / 6 / 3. The best arm wins only because it is raised more.
- **With the baseline** {raised["learned baseline"]["8"]:.0%} / {raised["learned baseline"]["6"]:.0%} /
  {raised["learned baseline"]["3"]:.0%}: only arms that beat the running average go up.
- Expected reward after {pulls} pulls: {final["no baseline"]:.2f} without, {final["learned baseline"]:.2f}
  with the baseline (best possible {max(MEANS)}).

**Variance reduction** (total variance of one estimate, {check_samples:,} samples at θ = 0, `check_estimator`):

| estimator | total variance | reduction factor |
|---|---|---|
| reinforce (A = R) | {variances["reinforce"]:.3f} | 1 |
| constant baseline b = J(θ) | {variances["constant-baseline"]:.3f} | {factors["constant-baseline"]:.1f} |
| exact V baseline | {variances["exact-baseline"]:.3f} | {factors["exact-baseline"]:.1f} |
| learned V baseline | {variances["learned-baseline"]:.3f} | {factors["learned-baseline"]:.1f} |

While learning, the mean squared error ‖ĝ − ∇J(θ_k)‖² of the actual steps was
{during["no baseline"]:.2f} without and {during["learned baseline"]:.2f} with the baseline: a factor
{numbers["variance_reduction_factor_while_learning"]:.1f}. (In a bandit V is one number, so the
constant and the exact-V baselines coincide.)
"""
    return Report(fig, numbers, markdown)
