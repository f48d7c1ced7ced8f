"""The k-armed bandit as a one-step MDP: the smallest problem with an exact policy gradient."""

from __future__ import annotations

import numpy as np

from policygrad.errors import PolicygradError
from policygrad.exact.mdp import ArrayLike, RewardNoise, TabularMDP


def bandit(
    means: ArrayLike,
    noise: RewardNoise = "gaussian",
    std: float = 1.0,
    action_names: list[str] | None = None,
) -> TabularMDP:
    """A k-armed bandit as a one-step episodic MDP: state 0 pulls an arm, state 1 is terminal.

    ``means`` (k,) are the expected rewards. ``noise`` "gaussian" adds N(0, std²) to the
    pulled arm's mean; "bernoulli" pays 1 with probability mean (means in [0, 1]);
    "none" pays the mean. Both states show the policy one observation, so ``theta``
    is (1, k) and J(θ) = Σ_a π(a) means[a].
    """
    means = np.asarray(means, dtype=np.float64).reshape(-1)
    k = means.shape[0]
    if k < 1:
        raise PolicygradError("a bandit needs at least one arm")
    transitions = np.zeros((2, k, 2))
    transitions[:, :, 1] = 1.0
    rewards = np.stack([means, np.zeros(k)])
    return TabularMDP(
        transitions,
        rewards,
        np.array([1.0, 0.0]),
        1.0,
        observations=[0, 0],
        reward_noise=noise,
        reward_std=std if noise == "gaussian" else 0.0,
        action_names=action_names or [chr(ord("A") + a) if k <= 26 else str(a) for a in range(k)],
    )
