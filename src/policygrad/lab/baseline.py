"""Baseline page model: the same REINFORCE learner with and without a baseline b, over several seeds.

The bandit of ``policygrad experiment baseline``: three arms paying 8, 6 and 3 (plus
N(0, 1) noise), so every return is positive. The learning runs are that experiment's
:func:`policygrad.experiments.baseline.learn` (single-pull REINFORCE; the baseline is
learned by the library's ``value_loss``). The raw-return example's advantages come from
``gae`` (λ = 1: A = G − b), the variances from :func:`policygrad.exact.check_estimator`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from policygrad.advantages import gae
from policygrad.exact import bandit, check_estimator
from policygrad.experiments.baseline import MEANS, NOISE_STD, learn
from policygrad.lab import inputs

#: The raw-return example: three sampled actions whose returns were 8, 6 and 3.
EXAMPLE_RETURNS = (8.0, 6.0, 3.0)
MAX_SEEDS = 20
MAX_PULLS = 2_000
VARIANCE_SAMPLES = 4_000


def example_advantages(returns: tuple[float, ...] = EXAMPLE_RETURNS) -> dict[str, np.ndarray | float]:
    """What multiplies ∇log π(a) for each sampled action: G (raw) and G − b with b = mean G.

    Each return is a one-step episode; ``gae`` with λ = 1 and V ≡ b gives A = G − b.
    """
    rewards = torch.tensor(returns, dtype=torch.float64)[:, None]  # (N, 1): one step per episode
    ended = torch.ones_like(rewards, dtype=torch.bool)
    zeros = torch.zeros_like(rewards)
    raw, _ = gae(rewards, zeros, zeros, ended, ended, 1.0, 1.0)
    b = float(rewards.mean())
    with_baseline, _ = gae(rewards, torch.full_like(rewards, b), zeros, ended, ended, 1.0, 1.0)
    return {"raw": raw[:, 0].numpy(), "baseline": b, "with_baseline": with_baseline[:, 0].numpy()}


@dataclass(frozen=True)
class Simulation:
    """Curves of the exact J(θ) (seeds, pulls + 1) with and without a baseline, and measured variances."""

    seeds: int
    pulls: int
    curves: dict[str, np.ndarray]
    best_prob: dict[str, np.ndarray]
    squared_error: dict[str, float]  # mean ‖ĝ − ∇J(θ_k)‖² of the steps actually taken
    variance_at_start: dict[str, float]  # total variance of one estimate at θ = 0

    def final(self) -> dict[str, tuple[float, float]]:
        """Mean and spread (standard deviation over seeds) of the final J(θ)."""
        return {label: (float(c[:, -1].mean()), float(c[:, -1].std())) for label, c in self.curves.items()}


LABELS = {"no baseline": False, "with baseline": True}


def simulate(
    seeds: int, pulls: int, seed: int = 0, on_progress: Callable[[float, str], None] | None = None
) -> Simulation:
    """Run ``seeds`` independent learners of ``pulls`` pulls, without and then with the baseline.

    The learners of one setting run side by side (one θ per seed, batched in the library's
    tabular code); both settings start from the same random stream ``seed``.
    """
    seeds = inputs.count(seeds, "number of seeds", MAX_SEEDS)
    pulls = inputs.count(pulls, "number of pulls", MAX_PULLS)
    mdp = bandit(list(MEANS), noise="gaussian", std=NOISE_STD)
    runs: dict[str, dict[str, np.ndarray]] = {}
    for done, (label, with_baseline) in enumerate(LABELS.items()):
        if on_progress is not None:
            on_progress(done / 3, f"{label}: {seeds} learners × {pulls:,} pulls")
        runs[label] = learn(mdp, pulls, seeds, with_baseline, torch.Generator().manual_seed(seed))
    if on_progress is not None:
        on_progress(2 / 3, f"variance of one estimate at θ = 0 ({VARIANCE_SAMPLES:,} samples)")
    theta0 = mdp.zeros()
    variance = {
        label: check_estimator(mdp, theta0, estimator, VARIANCE_SAMPLES, seed=seed).total_variance
        for label, estimator in (("no baseline", "reinforce"), ("with baseline", "constant-baseline"))
    }
    if on_progress is not None:
        on_progress(1.0, "done")
    return Simulation(
        seeds=seeds,
        pulls=pulls,
        curves={label: run["objective"] for label, run in runs.items()},
        best_prob={label: run["best_prob"] for label, run in runs.items()},
        squared_error={label: float(run["sq_error"].mean()) for label, run in runs.items()},
        variance_at_start=variance,
    )
