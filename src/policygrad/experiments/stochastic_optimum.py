"""Stochastic optimum: when the best policy is random, policy gradient finds it and an argmax cannot.

Short corridor with switched actions (Sutton & Barto 2018, Example 13.1): the states look
alike, the optimum goes right with p* = 2 − √2, J* = −(6 + 4√2); both deterministic
policies never arrive. Rock-paper-scissors against an opponent who best-responds to π:
the optimum is uniform with worst case 0; every deterministic policy loses (−1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from policygrad.exact import rock_paper_scissors, sample_gradients, short_corridor, short_corridor_value
from policygrad.experiments.common import Report, figure, fmt

SUMMARY = "short corridor and rock-paper-scissors: policy gradient reaches the stochastic optimum, argmax cannot"
EPSILON = 0.1  # ε-greedy, the usual way a value method makes a deterministic policy explore


def _p_right(theta: np.ndarray) -> float:
    return float(1.0 / (1.0 + math.exp(theta[0, 0] - theta[0, 1])))


def corridor(seed: int, updates: int, batch: int) -> dict[str, Any]:
    """Exact gradient ascent and sampled REINFORCE (``batch`` episodes per update) from P(right) ≈ 0.27."""
    mdp = short_corridor()
    start = np.array([[0.0, -1.0]])
    theta, exact_p = start.copy(), [_p_right(start)]
    for _ in range(updates):
        theta = theta + 0.01 * mdp.gradient(theta)
        exact_p.append(_p_right(theta))
    theta, sampled_p = start.copy(), [_p_right(start)]
    for k in range(updates):
        grads = sample_gradients(mdp, theta, "reinforce", batch, seed=seed * 1_000_003 + k, max_steps=2_000)
        theta = theta + 0.01 / math.sqrt(1 + k / 20) * grads.mean(0).numpy()
        sampled_p.append(_p_right(theta))
    tail = np.array(sampled_p[-max(updates // 5, 1) :])
    return {"exact_p": np.array(exact_p), "sampled_p": np.array(sampled_p), "sampled_tail_mean": float(tail.mean())}


def rps(seed: int, updates: int, batch: int) -> dict[str, Any]:
    """(Sub)gradient ascent on the worst case, exact and sampled (the opponent answers π each round)."""
    game = rock_paper_scissors()
    start = np.array([[1.0, 0.0, -0.5]])
    out: dict[str, Any] = {}
    for mode in ("exact", "sampled"):
        theta, probs, values = start.copy(), [game.policy(start)[0]], [game.objective(start)]
        for k in range(updates):
            if mode == "exact":
                grad = game.gradient(theta)
            else:  # against its current best response the game is a bandit: sample it with the library
                grads = sample_gradients(game.as_bandit(theta), theta, "constant-baseline", batch, seed=seed * 7 + k)
                grad = grads.mean(0).numpy()
            theta = theta + 0.5 / math.sqrt(k + 1) * grad
            probs.append(game.policy(theta)[0])
            values.append(game.objective(theta))
        out[mode] = {"probs": np.array(probs), "worst_case": np.array(values)}
    return out


def run(seed: int, quick: bool = False, **_: Any) -> Report:
    updates, batch, rps_updates = (20, 4, 30) if quick else (400, 32, 1_000)
    p_star = 2.0 - math.sqrt(2.0)
    j_star = short_corridor_value(p_star)
    c = corridor(seed, updates, batch)
    r = rps(seed, rps_updates, 64)
    greedy = {p: short_corridor_value(p) for p in (EPSILON / 2, 1 - EPSILON / 2)}
    best_greedy = max(greedy.values())

    fig, axes = figure(2, 2, width=5.2)
    ax = axes[0, 0]
    p = np.linspace(0.02, 0.98, 400)
    ax.plot(p, [short_corridor_value(x) for x in p], color="black", label="exact J(p)")
    ax.plot([p_star], [j_star], "o", color="C2", label=f"optimum p* = {p_star:.3f}, J* = {j_star:.2f}")
    for x, v in greedy.items():
        ax.plot([x], [v], "s", color="C3")
    ax.plot([], [], "s", color="C3", label=f"ε-greedy (ε = {EPSILON}): {greedy[1 - EPSILON / 2]:.1f}")
    ax.axvline(
        c["sampled_tail_mean"], color="C0", ls="--", label=f"sampled REINFORCE: p = {c['sampled_tail_mean']:.3f}"
    )
    ax.set(title="short corridor: J vs P(right); p = 0, 1 never arrive (−∞)", xlabel="P(right)", ylabel="J")
    ax.set_ylim(-100, 0)
    ax.legend(fontsize=8, loc="lower center")
    ax = axes[0, 1]
    ax.plot(c["exact_p"], color="black", label="exact gradient ascent")
    ax.plot(c["sampled_p"], color="C0", alpha=0.8, label=f"REINFORCE, {batch} episodes per update")
    ax.axhline(p_star, color="C2", ls=":", label="p* = 2 − √2")
    ax.set(title="short corridor: learning P(right)", xlabel="update", ylabel="P(right)", ylim=(0, 1))
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    for a, name in enumerate(("rock", "paper", "scissors")):
        ax.plot(r["sampled"]["probs"][:, a], color=f"C{a}", label=f"{name} (sampled)")
        ax.plot(r["exact"]["probs"][:, a], color=f"C{a}", ls="--", lw=1)
    ax.axhline(1 / 3, color="gray", ls=":", lw=1)
    ax.plot([], [], "k--", lw=1, label="exact gradient")
    ax.set(title="rock-paper-scissors vs a best responder: π", xlabel="update", ylim=(0, 1))
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(0, rps_updates)
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.plot(r["sampled"]["worst_case"], color="C0", label="sampled")
    ax.plot(r["exact"]["worst_case"], color="black", ls="--", lw=1, label="exact gradient")
    ax.axhline(0, color="C2", ls=":", label="optimum (uniform): 0")
    ax.axhline(-1, color="C3", ls=":", label="any deterministic policy: −1")
    ax.set(title="rock-paper-scissors: worst-case payoff", xlabel="update", ylim=(-1.1, 0.1))
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(0, rps_updates)
    ax.legend(fontsize=8)
    fig.suptitle(f"The best policy is stochastic (seed {seed})")

    final_pi = {mode: r[mode]["probs"][-1] for mode in ("exact", "sampled")}
    final_j = {mode: float(r[mode]["worst_case"][-1]) for mode in ("exact", "sampled")}
    numbers = {
        "short_corridor": {
            "analytic_p_right": p_star,
            "analytic_value": j_star,
            "exact_ascent_p_right": float(c["exact_p"][-1]),
            "exact_ascent_value": short_corridor_value(float(c["exact_p"][-1])),
            "sampled_p_right_last_20pct": c["sampled_tail_mean"],
            "sampled_value": short_corridor_value(c["sampled_tail_mean"]),
            "deterministic_value": float("-inf"),
            "epsilon_greedy_values": {f"p_right={k:g}": v for k, v in greedy.items()},
            "margin_over_epsilon_greedy": j_star - best_greedy,
            "updates": updates,
            "episodes_per_update": batch,
        },
        "rock_paper_scissors": {
            "analytic_policy": [1 / 3] * 3,
            "analytic_value": 0.0,
            "exact_policy": final_pi["exact"],
            "exact_worst_case": final_j["exact"],
            "sampled_policy": final_pi["sampled"],
            "sampled_worst_case": final_j["sampled"],
            "deterministic_worst_case": -1.0,
            "margin_over_deterministic": 0.0 - (-1.0),
            "updates": rps_updates,
        },
    }
    sc = numbers["short_corridor"]
    markdown = f"""# Stochastic optimum

**Short corridor** (Sutton & Barto, Example 13.1; γ = 1, −1 per step, actions switched in
the second state, all states look alike so the policy is one probability p of going right).

| policy | P(right) | J |
|---|---|---|
| analytic optimum | {p_star:.4f} | {j_star:.4f} |
| exact gradient ascent ({updates} steps) | {sc["exact_ascent_p_right"]:.4f} | {sc["exact_ascent_value"]:.4f} |
| sampled REINFORCE (last 20 % of {updates} updates) | {c["sampled_tail_mean"]:.4f} | {sc["sampled_value"]:.4f} |
| ε-greedy, greedy = right (ε = {EPSILON}) | {1 - EPSILON / 2} | {greedy[1 - EPSILON / 2]:.2f} |
| ε-greedy, greedy = left | {EPSILON / 2} | {greedy[EPSILON / 2]:.2f} |
| either deterministic policy (an argmax) | 0 or 1 | −∞ (never reaches the goal) |

Policy gradient beats the best ε-greedy policy by {sc["margin_over_epsilon_greedy"]:.2f} and the
deterministic ones by an infinite margin.

**Rock-paper-scissors against a best responder** (worst-case payoff; optimum: uniform, 0).
Exact (sub)gradient ascent ends at π = {np.round(final_pi["exact"], 4).tolist()} (worst case
{fmt(final_j["exact"])}); sampled REINFORCE with the baseline b = J(θ), the opponent answering each
new π, at π = {np.round(final_pi["sampled"], 4).tolist()} (worst case {fmt(final_j["sampled"])}).
Every deterministic policy — all an argmax over Q can express — has worst case −1: a margin of 1.
The worst case is not differentiable where the opponent's answers tie (at the optimum), so the
step size decays as 0.5/√k, as subgradient methods need.
"""
    return Report(fig, numbers, markdown)
