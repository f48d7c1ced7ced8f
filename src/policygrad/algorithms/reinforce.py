"""REINFORCE (Williams 1992): Monte-Carlo returns in the score-function update.

    g = E[ Σ_t ∇log π_θ(a_t|s_t) · G_t ],  G_t = Σ_k γ^k r_{t+k}

Learns from complete episodes only: each update plays one episode in each of
``num_envs`` environments, then takes one gradient step with A_t = G_t — which is
``gae`` with λ = 1 and V ≡ 0. No critic, no bootstrapping (a time-limit truncation
simply ends the sum). The step is the discounted return-to-go without the γ^t factor of
the policy-gradient theorem: ∇J for γ = 1, a biased but commonly used direction for γ < 1
(cosine 0.928 to ∇J on the γ = 0.9 gridworld at the uniform policy; docs/algorithms.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.algorithms.common import gae_advantages, one_step_update
from policygrad.config import TrainConfig, positive, setting
from policygrad.learners import Learner
from policygrad.rollout import Rollout

COLLECT = "episodes"
USES_CRITIC = False


@dataclass(frozen=True)
class ReinforceConfig(TrainConfig):
    """REINFORCE: ``num_envs`` complete episodes per update, A_t = G_t."""

    max_episode_steps: int = setting(
        1000, positive, "> 0", "cap on one episode's length (the env's own time limit applies first)"
    )


def advantages(rollout: Rollout, cfg: ReinforceConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A_t = G_t − V(s_t) by GAE with λ = 1: the return-to-go G_t itself, since V ≡ 0 here."""
    return gae_advantages(rollout, cfg.gamma, 1.0)


def update(learner: Learner, rollout: Rollout, cfg: ReinforceConfig, update_index: int) -> dict[str, float]:
    """One policy-gradient step on the episodes in ``rollout``."""
    return one_step_update(learner, rollout, cfg, advantages, vf_coef=0.0)


Config = ReinforceConfig
