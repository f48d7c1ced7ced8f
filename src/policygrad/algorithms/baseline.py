"""REINFORCE + baseline: subtract a learned state value from the return.

Δ from REINFORCE: a critic V_φ(s), regressed on G_t, and the advantage
A_t = G_t − V_φ(s_t) (``gae`` with λ = 1 and the learned values). Any b(s) that does
not depend on the action leaves the gradient unbiased, since E[∇log π(a|s)] = 0; a
good one (V) removes most of its variance. Still complete episodes only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.agent import Agent
from policygrad.algorithms.common import actor_critic_update
from policygrad.algorithms.reinforce import ReinforceConfig
from policygrad.config import _checked, _non_negative
from policygrad.rollout import Rollout

COLLECT = "episodes"
USES_CRITIC = True


@dataclass(frozen=True)
class BaselineConfig(ReinforceConfig):
    """REINFORCE + a learned baseline V(s)."""

    vf_coef: float = _checked(0.5, _non_negative, ">= 0", "weight of the value (baseline) loss")


def update(
    agent: Agent, optimizer: torch.optim.Optimizer, rollout: Rollout, cfg: BaselineConfig, update_index: int
) -> dict[str, float]:
    """One step: policy gradient with A = G − V(s), and V regressed on G."""
    return actor_critic_update(
        agent,
        optimizer,
        rollout,
        gamma=cfg.gamma,
        lam=1.0,
        vf_coef=cfg.vf_coef,
        ent_coef=cfg.ent_coef,
        max_grad_norm=cfg.max_grad_norm,
        fused=cfg.fused,
    )


Config = BaselineConfig
