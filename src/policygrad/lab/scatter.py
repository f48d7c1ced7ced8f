"""Gradient scatter page model: single-sample ∇J estimates of a two-armed softmax bandit.

The bandit of ``policygrad experiment gradient-scatter`` (rewards 1.0 and 0.2 plus
N(0, 0.5²) noise) at θ = (0, 0). Each click draws estimates with the library's
:func:`policygrad.exact.sample_gradients` (REINFORCE: one pull, A = R); the exact ∇J
comes from :meth:`policygrad.exact.TabularMDP.gradient`, direction (0.71, −0.71).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from policygrad.exact import bandit, sample_gradients
from policygrad.experiments.gradient_scatter import MEANS, NOISE_STD, angle_degrees
from policygrad.lab import inputs

MAX_BATCH = 10_000


@dataclass
class ScatterLab:
    """The state of the scatter page: every single-pull estimate ĝ so far, shape (n, 2)."""

    seed: int = 0
    samples: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.mdp = bandit(list(MEANS), noise="gaussian", std=NOISE_STD, action_names=["arm 1", "arm 2"])
        self.theta = self.mdp.zeros()
        self.exact = np.asarray(self.mdp.gradient(self.theta))[0]
        self.reset()

    def reset(self) -> None:
        """Forget every estimate (the next draws start a new random stream)."""
        self.samples = np.zeros((0, 2))
        self.draws = 0

    def sample(self, count: int = 1) -> np.ndarray:
        """Draw ``count`` single-pull REINFORCE estimates of ∇J; returns them, shape (count, 2)."""
        count = inputs.count(count, "number of samples", MAX_BATCH)
        seed = self.seed * 1_000_003 + self.draws  # a fresh, reproducible stream per click
        self.draws += 1
        new = sample_gradients(self.mdp, self.theta, "reinforce", count, seed=seed)[:, 0].numpy()
        self.samples = np.concatenate([self.samples, new])
        return new

    @property
    def mean(self) -> np.ndarray | None:
        """The running average ḡ of the estimates, or None before the first."""
        return self.samples.mean(0) if len(self.samples) else None

    def statistics(self) -> dict[str, object]:
        """Samples, the average and its direction, the true direction, the angle between them."""
        true_direction = self.exact / np.linalg.norm(self.exact)
        mean = self.mean
        if mean is None or not np.linalg.norm(mean) > 0:
            return {
                "samples": len(self.samples),
                "mean": mean,
                "direction": None,
                "true_direction": true_direction,
                "angle_degrees": None,
            }
        return {
            "samples": len(self.samples),
            "mean": mean,
            "direction": mean / np.linalg.norm(mean),
            "true_direction": true_direction,
            "angle_degrees": float(angle_degrees(mean[None, :], self.exact)[0]),
        }

    def wrong_way_fraction(self) -> float | None:
        """Share of single estimates pointing away from ∇J (negative dot product)."""
        if not len(self.samples):
            return None
        return float(np.mean(self.samples @ self.exact < 0))
