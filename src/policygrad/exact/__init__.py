"""Exact policy gradients on small MDPs, and the library's estimators checked against them.

A finite MDP is P (S, A, S), R (S, A), μ₀ (S,), γ. For a tabular softmax policy θ,
V = (I − γ P_π)⁻¹ r_π, J = μ₀ · V, and ∇J comes from autograd through the solve::

    import numpy as np
    from policygrad.exact import TabularMDP, bandit, check_estimator

    mdp = TabularMDP(np.ones((1, 2, 1)), np.array([[1.0, 0.2]]), np.array([1.0]), 0.9)
    mdp.gradient(np.zeros((1, 2)))          # array([[ 2., -2.]]): direction (1, −1)/√2
    check_estimator(bandit([1.0, 0.2]), np.zeros((1, 2)), "reinforce").max_abs_z
"""

from policygrad.exact.bandit import bandit
from policygrad.exact.constructors import (
    chain,
    gridworld,
    random_mdp,
    rock_paper_scissors,
    short_corridor,
    short_corridor_value,
)
from policygrad.exact.estimators import (
    ESTIMATORS,
    Estimator,
    EstimatorCheck,
    check_estimator,
    episodes_to_rollout,
    estimator_gradients,
    fit_critic,
    per_episode_gradients,
    sample_episode_batches,
    sample_gradients,
    summarize,
)
from policygrad.exact.games import BestResponseGame
from policygrad.exact.mdp import TabularMDP
from policygrad.exact.sampling import Episodes, sample_episodes

__all__ = [
    "TabularMDP",
    "BestResponseGame",
    "Episodes",
    "sample_episodes",
    "bandit",
    "chain",
    "gridworld",
    "short_corridor",
    "short_corridor_value",
    "rock_paper_scissors",
    "random_mdp",
    "ESTIMATORS",
    "Estimator",
    "EstimatorCheck",
    "check_estimator",
    "sample_gradients",
    "sample_episode_batches",
    "estimator_gradients",
    "summarize",
    "episodes_to_rollout",
    "per_episode_gradients",
    "fit_critic",
]
