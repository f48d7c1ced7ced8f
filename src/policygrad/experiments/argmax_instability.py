"""Argmax instability: a greedy policy jumps when nearly tied values swap; a softmax policy moves smoothly.

Part 1: two actions whose values differ by ε/2 swap order after a perturbation of ε. The
greedy policy changes completely (total variation 1) however small ε is; softmax(Q/τ)
changes by tanh(ε/4τ) ≈ ε/4τ. Part 2: learning a bandit with two nearly tied arms from
noisy rewards: the greedy policy over sample-average estimates flips back and forth,
while a softmax policy trained by REINFORCE drifts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from policygrad.exact import bandit, episodes_to_rollout, per_episode_gradients, sample_episodes
from policygrad.experiments.common import Report, figure

SUMMARY = "nearly tied actions: the greedy policy flips completely, the softmax policy moves by O(ε)"
MEANS = (0.50, 0.52)
NOISE_STD = 1.0
EXPLORATION = 0.1  # ε-greedy exploration of the value-based learner
LEARNING_RATE = 0.05
TEMPERATURES = (1.0, 0.1)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """½ Σ_a |p(a) − q(a)| over the last axis."""
    return 0.5 * np.abs(p - q).sum(-1)


def perturbation_sweep(epsilons: np.ndarray) -> dict[str, np.ndarray]:
    """TV between the policies before (Q = (ε/2, 0)) and after (Q = (0, ε/2)) the swap."""
    before = np.stack([epsilons / 2, np.zeros_like(epsilons)], 1)
    after = before[:, ::-1]
    greedy = lambda q: np.eye(2)[q.argmax(1)]  # noqa: E731 - one-line policy definitions
    out = {"greedy": total_variation(greedy(before), greedy(after))}
    for tau in TEMPERATURES:
        soft = lambda q, tau=tau: np.exp(q / tau) / np.exp(q / tau).sum(1, keepdims=True)  # noqa: E731
        out[f"softmax τ={tau:g}"] = total_variation(soft(before), soft(after))
    return out


def greedy_learner(steps: int, runs: int, rng: np.random.Generator) -> np.ndarray:
    """ε-greedy over sample-average estimates; returns the greedy policy's P(arm 2) (runs, steps + 1)."""
    totals, counts = np.zeros((runs, 2)), np.zeros((runs, 2))
    rows = np.arange(runs)
    greedy_arm = np.zeros(runs, dtype=int)  # ties broken towards arm 1, as argmax does
    history = [greedy_arm.astype(float)]
    for _ in range(steps):
        explore = rng.random(runs) < EXPLORATION
        arm = np.where(explore, rng.integers(0, 2, runs), greedy_arm)
        reward = np.array(MEANS)[arm] + NOISE_STD * rng.standard_normal(runs)
        totals[rows, arm] += reward
        counts[rows, arm] += 1
        estimates = np.where(counts > 0, totals / np.maximum(counts, 1), 0.0)
        greedy_arm = estimates.argmax(1)
        history.append(greedy_arm.astype(float))
    return np.stack(history, 1)


def softmax_learner(steps: int, runs: int, generator: torch.Generator) -> np.ndarray:
    """Single-pull REINFORCE with a running-mean baseline (library rollout, gae, loss); P(arm 2) (runs, steps + 1)."""
    mdp = bandit(MEANS, noise="gaussian", std=NOISE_STD)
    theta = np.zeros((runs, *mdp.theta_shape))
    baseline = torch.zeros(runs, 2, dtype=torch.float64)
    history = [mdp.policy(theta)[:, 0, 1]]
    for k in range(steps):
        episodes = sample_episodes(mdp, theta, runs, 2, seed=generator)
        grads = per_episode_gradients(theta, episodes_to_rollout(mdp, theta, episodes, baseline), 1.0, 1.0)
        theta = theta + LEARNING_RATE * grads.numpy()
        baseline[:, 0] += (episodes.rewards[:, 0] - baseline[:, 0]) / (k + 1)  # mean reward so far
        history.append(mdp.policy(theta)[:, 0, 1])
    return np.stack(history, 1)


def run(seed: int, quick: bool = False, **_: Any) -> Report:
    steps, runs = (100, 4) if quick else (2_000, 100)
    epsilons = np.logspace(-6, 0, 61)
    sweep = perturbation_sweep(epsilons)
    greedy = greedy_learner(steps, runs, np.random.default_rng(seed))
    soft = softmax_learner(steps, runs, torch.Generator().manual_seed(seed))
    greedy_moves = np.abs(np.diff(greedy, axis=1))  # TV of each step's change: 0 or 1
    soft_moves = np.abs(np.diff(soft, axis=1))  # TV between two-action policies is |Δπ(arm 2)|
    flips = greedy_moves.sum(1)

    fig, axes = figure(1, 3, width=4.6)
    ax = axes[0, 0]
    ax.loglog(epsilons, sweep["greedy"], color="C3", lw=2, label="greedy (argmax)")
    for k, tau in enumerate(TEMPERATURES):
        ax.loglog(epsilons, sweep[f"softmax τ={tau:g}"], color=f"C{k}", label=f"softmax(Q/τ), τ = {tau:g}")
    ax.set(title="policy change when two values swap", xlabel="perturbation ε", ylabel="total variation")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    x = np.arange(steps + 1)
    ax.step(x, greedy[0], color="C3", where="post", lw=1, label="greedy over estimates")
    ax.plot(x, soft[0], color="C0", label="softmax, REINFORCE")
    ax.set(title=f"one run: P(arm 2), arms {MEANS}", xlabel="step", ylabel="P(arm 2)", ylim=(-0.05, 1.05))
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    bins = np.logspace(-7, 0.2, 44)
    total = greedy_moves.size
    ax.hist(soft_moves.ravel(), bins=bins, weights=np.full(total, 1 / total), color="C0", label="softmax")
    ax.hist(
        greedy_moves[greedy_moves > 0],
        bins=bins,
        weights=np.full(int(flips.sum()), 1 / total),
        color="C3",
        label=f"greedy: jumps of 1 ({flips.sum() / total:.2%} of steps; no change otherwise)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(top=1.5)
    ax.set(title=f"size of each step's policy change ({runs} runs)", xlabel="total variation", ylabel="share of steps")
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Argmax instability: noise σ = {NOISE_STD}, value gap {MEANS[1] - MEANS[0]:g} (seed {seed})")

    at = {f"{e:g}": {k: float(np.interp(np.log(e), np.log(epsilons), v)) for k, v in sweep.items()} for e in (1e-3,)}
    numbers = {
        "perturbation_tv_at_eps_1e-3": at["0.001"],
        "perturbation_tv_curve": {"epsilons": epsilons[::10], **{k: v[::10] for k, v in sweep.items()}},
        "bandit": {"means": list(MEANS), "noise_std": NOISE_STD, "steps": steps, "runs": runs},
        "greedy": {
            "exploration": EXPLORATION,
            "flips_per_run_mean": float(flips.mean()),
            "flips_per_run_max": int(flips.max()),
            "runs_with_a_flip": int((flips > 0).sum()),
            "final_on_better_arm": float(greedy[:, -1].mean()),
        },
        "softmax": {
            "learning_rate": LEARNING_RATE,
            "largest_single_step_tv": float(soft_moves.max()),
            "mean_single_step_tv": float(soft_moves.mean()),
            "path_length_per_run_mean": float(soft_moves.sum(1).mean()),
            "share_of_steps_moving_more_than_0.01": float((soft_moves > 0.01).mean()),
            "final_p_better_arm_mean": float(soft[:, -1].mean()),
        },
    }
    g, s = numbers["greedy"], numbers["softmax"]
    markdown = f"""# Argmax instability

**Perturbation.** Two values ε/2 apart swap order. At ε = 10⁻³ the greedy policy changes by total
variation {at["0.001"]["greedy"]:.0f} (completely); softmax(Q/τ) by {at["0.001"]["softmax τ=1"]:.2e} (τ = 1) and
{at["0.001"]["softmax τ=0.1"]:.2e} (τ = 0.1), i.e. tanh(ε/4τ) = O(ε). A policy that is an argmax is a
discontinuous function of the values; a softmax policy is a smooth one, which is what makes
∇_θ J exist.

**Learning from noise.** Two arms with means {MEANS} (gap {MEANS[1] - MEANS[0]:g}) and reward
noise σ = {NOISE_STD}, {runs} runs × {steps} steps. The greedy policy over sample-average estimates
(ε-greedy exploration {EXPLORATION}) flipped {g["flips_per_run_mean"]:.1f} times per run on average
(at most {g["flips_per_run_max"]}; {g["runs_with_a_flip"]} of {runs} runs flipped at least once), each flip a
total-variation jump of 1. The softmax policy trained by REINFORCE (α = {LEARNING_RATE}) never moved
more than {s["largest_single_step_tv"]:.4f} in one step (mean {s["mean_single_step_tv"]:.2e}). It is no less
noisy — summed over a run its small moves add up to {s["path_length_per_run_mean"]:.1f}, a random walk driven by the
reward noise — but it drifts instead of jumping. At the end the greedy policy picked the better arm in
{g["final_on_better_arm"]:.0%} of runs; the softmax policies put {s["final_p_better_arm_mean"]:.2f} on it on
average — with a gap this small, neither has much evidence, but only one of them jumps.
"""
    return Report(fig, numbers, markdown)
