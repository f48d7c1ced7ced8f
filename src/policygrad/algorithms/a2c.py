"""A2C (Mnih et al. 2016, synchronous): Actor-Critic + N environments sampled in parallel + GAE(λ).

Δ from Actor-Critic: each update uses an (N, T) rollout of ``num_envs`` environments
× ``rollout_steps`` steps, and advantages are GAE(λ) (Schulman et al. 2016), which
blends the TD error (λ = 0) and the Monte-Carlo return (λ = 1). More samples per step,
decorrelated across environments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.algorithms.actor_critic import ActorCriticConfig
from policygrad.algorithms.common import gae_advantages, one_step_update
from policygrad.config import positive, setting, unit_closed
from policygrad.learners import Learner
from policygrad.losses import normalize
from policygrad.rollout import Rollout

COLLECT = "steps"
USES_CRITIC = True


@dataclass(frozen=True)
class A2CConfig(ActorCriticConfig):
    """Synchronous advantage actor-critic over parallel environments."""

    num_envs: int = setting(8, positive, "> 0", "parallel environments")
    rollout_steps: int = setting(5, positive, "> 0", "steps per environment between updates (T)")
    gae_lambda: float = setting(0.95, unit_closed, "[0, 1]", "GAE λ: 0 is TD, 1 is Monte-Carlo")
    normalize_advantages: bool = setting(False, help="standardise advantages in each batch")


def advantages(rollout: Rollout, cfg: A2CConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(λ) over the (N, T) rollout, standardised over the batch if ``normalize_advantages``."""
    adv, returns = gae_advantages(rollout, cfg.gamma, cfg.gae_lambda)
    if cfg.normalize_advantages:
        adv = normalize(adv, rollout.mask)
    return adv, returns


def update(learner: Learner, rollout: Rollout, cfg: A2CConfig, update_index: int) -> dict[str, float]:
    """One synchronous step with GAE(λ) advantages over the (N, T) rollout."""
    return one_step_update(learner, rollout, cfg, advantages, vf_coef=cfg.vf_coef)


Config = A2CConfig
