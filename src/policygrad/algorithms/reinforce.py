"""REINFORCE (Williams 1992): the policy-gradient theorem with Monte-Carlo returns.

∇J(θ) = E[ Σ_t ∇log π_θ(a_t|s_t) · G_t ],  G_t = Σ_k γ^k r_{t+k}

Learns from complete episodes only: each update plays one episode in each of
``num_envs`` environments, then takes one gradient step with A_t = G_t — which is
``gae`` with λ = 1 and V ≡ 0. No critic, no bootstrapping (a time-limit truncation
simply ends the sum).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.agent import Agent
from policygrad.algorithms.common import actor_critic_update
from policygrad.config import TrainConfig, _checked, _positive
from policygrad.rollout import Rollout

COLLECT = "episodes"


@dataclass(frozen=True)
class ReinforceConfig(TrainConfig):
    """REINFORCE: ``num_envs`` complete episodes per update, A_t = G_t."""

    max_episode_steps: int = _checked(
        1000, _positive, "> 0", "cap on one episode's length (the env's own time limit applies first)"
    )


def update(
    agent: Agent, optimizer: torch.optim.Optimizer, rollout: Rollout, cfg: ReinforceConfig, update_index: int
) -> dict[str, float]:
    """One policy-gradient step on the episodes in ``rollout`` (values are zero: V ≡ 0)."""
    return actor_critic_update(
        agent,
        optimizer,
        rollout,
        gamma=cfg.gamma,
        lam=1.0,
        vf_coef=0.0,
        ent_coef=cfg.ent_coef,
        max_grad_norm=cfg.max_grad_norm,
        fused=cfg.fused,
    )


USES_CRITIC = False
Config = ReinforceConfig
