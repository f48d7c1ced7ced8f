"""A2C (Mnih et al. 2016, synchronous): Actor-Critic + N environments sampled in parallel + GAE(λ).

Δ from Actor-Critic: each update uses an (N, T) rollout of ``num_envs`` environments
× ``rollout_steps`` steps, and advantages are GAE(λ) (Schulman et al. 2016), which
blends the TD error (λ = 0) and the Monte-Carlo return (λ = 1). More samples per step,
decorrelated across environments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.agent import Agent
from policygrad.algorithms.actor_critic import ActorCriticConfig
from policygrad.algorithms.common import actor_critic_update
from policygrad.config import _checked, _positive, _unit_closed
from policygrad.rollout import Rollout

COLLECT = "steps"
USES_CRITIC = True


@dataclass(frozen=True)
class A2CConfig(ActorCriticConfig):
    """Synchronous advantage actor-critic over parallel environments."""

    num_envs: int = _checked(8, _positive, "> 0", "parallel environments")
    rollout_steps: int = _checked(5, _positive, "> 0", "steps per environment between updates (T)")
    gae_lambda: float = _checked(0.95, _unit_closed, "[0, 1]", "GAE λ: 0 is TD, 1 is Monte-Carlo")
    normalize_advantages: bool = _checked(False, help="standardise advantages in each batch")


def update(
    agent: Agent, optimizer: torch.optim.Optimizer, rollout: Rollout, cfg: A2CConfig, update_index: int
) -> dict[str, float]:
    """One synchronous step with GAE(λ) advantages over the (N, T) rollout."""
    return actor_critic_update(
        agent,
        optimizer,
        rollout,
        gamma=cfg.gamma,
        lam=cfg.gae_lambda,
        vf_coef=cfg.vf_coef,
        ent_coef=cfg.ent_coef,
        max_grad_norm=cfg.max_grad_norm,
        fused=cfg.fused,
        normalize_advantages=cfg.normalize_advantages,
    )


Config = A2CConfig
