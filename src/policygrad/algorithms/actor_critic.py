"""Actor-Critic: the critic bootstraps, so updates no longer wait for episodes to end.

Δ from REINFORCE + baseline: the advantage is the one-step TD error
A_t = r_t + γ V(s_{t+1}) − V(s_t) (``gae`` with λ = 0), and V is regressed on the TD
target r_t + γ V(s_{t+1}). That needs only one transition, so it updates every
``rollout_steps`` steps (1: every step) from a single environment, trading the Monte-
Carlo return's variance for the critic's bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.agent import Agent
from policygrad.algorithms.baseline import BaselineConfig
from policygrad.algorithms.common import actor_critic_update
from policygrad.config import _checked, _positive
from policygrad.rollout import Rollout

COLLECT = "steps"
USES_CRITIC = True


@dataclass(frozen=True)
class ActorCriticConfig(BaselineConfig):
    """One-step TD actor-critic on a single environment."""

    num_envs: int = _checked(1, _positive, "> 0", "environments (1: the classic single-env actor-critic)")
    rollout_steps: int = _checked(1, _positive, "> 0", "steps between updates")


def update(
    agent: Agent, optimizer: torch.optim.Optimizer, rollout: Rollout, cfg: ActorCriticConfig, update_index: int
) -> dict[str, float]:
    """One step with the TD error as advantage (λ = 0)."""
    return actor_critic_update(
        agent,
        optimizer,
        rollout,
        gamma=cfg.gamma,
        lam=0.0,
        vf_coef=cfg.vf_coef,
        ent_coef=cfg.ent_coef,
        max_grad_norm=cfg.max_grad_norm,
        fused=cfg.fused,
    )


Config = ActorCriticConfig
