"""Bandit: four arms A–D at 25 % each; every pull moves θ by α ∇log π(a) · R.

Two modes. The policy samples its own arms (policy gradient proper: the probabilities
converge to the best arm), or a fixed, user-chosen sequence of arms is pulled (then the
update is not the policy gradient any more — the arms were not drawn from π — and
whatever is pulled often with a positive reward gains probability).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from policygrad.errors import PolicygradError
from policygrad.exact import bandit, episodes_to_rollout, per_episode_gradients, sample_episodes
from policygrad.exact.sampling import Episodes
from policygrad.experiments.common import Report, figure

SUMMARY = "four-armed bandit: ∇log π(a)·R per pull, by sampling or by a fixed sequence of arms"
MEANS = (0.2, 0.5, 0.8, 0.4)  # hidden Bernoulli success probabilities of A, B, C, D
LEARNING_RATE = 0.2
DEFAULT_SEQUENCE = "ABCD"


def _pull_update(mdp: Any, theta: np.ndarray, episodes: Episodes) -> np.ndarray:
    """θ + α ∇log π(a)·R for each pull, computed by the library's rollout, gae and loss."""
    grad = per_episode_gradients(theta, episodes_to_rollout(mdp, theta, episodes, critic=None), 1.0, 1.0)
    return theta + LEARNING_RATE * grad.numpy().reshape(theta.shape)


def learn_by_sampling(mdp: Any, pulls: int, runs: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``runs`` learners in parallel, each drawing its arms from its own π.

    Returns π after every pull (runs, pulls + 1, k) and the arms pulled (runs, pulls).
    """
    theta = np.zeros((runs, *mdp.theta_shape))
    probs, arms = [mdp.policy(theta)[:, 0]], []
    for _ in range(pulls):
        episodes = sample_episodes(mdp, theta, runs, 2, seed=generator)
        arms.append(episodes.actions[:, 0].numpy())
        theta = _pull_update(mdp, theta, episodes)
        probs.append(mdp.policy(theta)[:, 0])
    return np.stack(probs, 1), np.stack(arms, 1)


def learn_from_sequence(mdp: Any, arms: list[int], generator: torch.Generator) -> tuple[np.ndarray, list[float]]:
    """The same update for a fixed sequence of arms (rewards still drawn from the hidden means)."""
    theta = mdp.zeros()
    probs, rewards = [mdp.policy(theta)[0]], []
    for arm in arms:
        reward = float(torch.rand(1, generator=generator, dtype=torch.float64) < MEANS[arm])
        rewards.append(reward)
        theta = _pull_update(mdp, theta, Episodes.one_pull(arm, reward))
        probs.append(mdp.policy(theta)[0])
    return np.array(probs), rewards


def parse_sequence(text: str, repeats_to: int) -> list[int]:
    """'CCAB' → [2, 2, 0, 1], repeated up to ``repeats_to`` pulls."""
    letters = text.replace(",", "").replace(" ", "").upper()
    if not letters or any(c not in "ABCD" for c in letters):
        raise PolicygradError(f"--actions must be a sequence of the arms A, B, C, D (e.g. CCAB), got {text!r}")
    arms = ["ABCD".index(c) for c in letters]
    return (arms * (repeats_to // len(arms) + 1))[: max(repeats_to, len(arms))]


def run(seed: int, quick: bool = False, actions: str | None = None, **_: Any) -> Report:
    pulls, runs = (60, 4) if quick else (400, 50)
    pattern = (actions or DEFAULT_SEQUENCE).replace(",", "").replace(" ", "").upper()
    sequence = parse_sequence(pattern, pulls)  # checked before any work
    mdp = bandit(MEANS, noise="bernoulli", action_names=list("ABCD"))
    best = int(np.argmax(MEANS))
    generator = torch.Generator().manual_seed(seed)
    curves, all_arms = learn_by_sampling(mdp, pulls, runs, generator)
    first_probs, first_arms = curves[0], all_arms[0]
    best_prob = curves[:, :, best]
    pulled = np.bincount(sequence, minlength=4) * np.array(MEANS)
    # Expected step Σ_b n_b m_b (e_b − π) vanishes where π(a) ∝ n_a m_a (pulls × success rate).
    matching = pulled / pulled.sum()
    fixed_probs, fixed_rewards = learn_from_sequence(mdp, sequence, generator)

    fig, axes = figure(1, 3, width=4.6)
    ax = axes[0, 0]
    for a, name in enumerate("ABCD"):
        ax.plot(first_probs[:, a], label=f"{name} (E[R] = {MEANS[a]})")
    ax.set(title="the policy samples (one run)", xlabel="pull", ylabel="π(a)", ylim=(0, 1))
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    x = np.arange(pulls + 1)
    ax.plot(x, best_prob.mean(0), color="C2", label=f"mean of {runs} runs")
    ax.fill_between(x, *np.percentile(best_prob, [10, 90], axis=0), color="C2", alpha=0.25, label="10–90 %")
    ax.axhline(0.25, color="gray", lw=0.8, ls=":")
    ax.set(title="π(C), the best arm, over runs", xlabel="pull", ylim=(0, 1))
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    for a, name in enumerate("ABCD"):
        ax.plot(fixed_probs[:, a], label=name, color=f"C{a}")
        ax.axhline(matching[a], color=f"C{a}", ls=":", lw=1)
    ax.plot([], [], "k:", lw=1, label="π(a) ∝ pulls × E[R]")
    shown = "".join("ABCD"[a] for a in sequence[:12]) + ("…" if len(sequence) > 12 else "")
    ax.set(title=f"fixed sequence {shown}", xlabel="pull", ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.suptitle(f"Softmax bandit, θ ← θ + {LEARNING_RATE} ∇log π(a)·R (seed {seed})")

    final = best_prob[:, -1]
    numbers = {
        "hidden_means": list(MEANS),
        "learning_rate": LEARNING_RATE,
        "pulls": pulls,
        "runs": runs,
        "sampling": {
            "final_policy_first_run": first_probs[-1],
            "pulls_per_arm_first_run": np.bincount(first_arms, minlength=4),
            "final_best_prob_mean": float(final.mean()),
            "final_best_prob_min": float(final.min()),
            "runs_converging_to_best": int((final > 0.5).sum()),
        },
        "fixed_sequence": {
            "pattern": pattern,
            "pulls": len(sequence),
            "final_policy": fixed_probs[-1],
            "expected_fixed_point": matching,
            "mean_reward": float(np.mean(fixed_rewards)),
        },
    }
    markdown = f"""# Bandit: one pull, one update

Four arms A–D start at 25 % each; their Bernoulli success rates {MEANS} are hidden from the
learner. Each pull changes the logits by θ ← θ + α ∇log π(a)·R with α = {LEARNING_RATE}
(`policygrad.exact` builds a one-step rollout; `gae` gives A = R; `policy_gradient_loss` and
autograd give the step). For a softmax, ∇log π(a) = e_a − π: the pulled arm goes up by
α(1 − π(a))R and every other arm b down by α π(b) R.

- **The policy samples.** After {pulls} pulls, π(C) (the best arm) averages
  {final.mean():.3f} over {runs} runs (lowest {final.min():.3f}); {int((final > 0.5).sum())} of {runs}
  runs put more than half the probability on C.
- **A fixed sequence** ({pattern} repeated, {len(sequence)} pulls) ends at
  π = {np.round(fixed_probs[-1], 3).tolist()}. The arms were not drawn from π, so this is not the
  policy gradient: an arm gains whenever it is pulled and pays, however likely π was to pick it.
  The expected step Σ_b n_b m_b (e_b − π) vanishes at π(a) ∝ n_a m_a (pulls × success rate),
  here {np.round(matching, 3).tolist()}: the policy hovers around that "probability matching"
  point instead of converging to the best arm.
"""
    return Report(fig, numbers, markdown)
