"""RLOO = REINFORCE + a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024).

Δ from reinforce: K responses per prompt, and each one's return is baselined by the
mean return of the other K − 1:

    A_i,t = G_i,t − (1/(K−1)) Σ_{j≠i} G_j,0

The baseline does not depend on response i, so the gradient stays unbiased (the
baseline step of the chain, with the other samples standing in for V(s)); it removes
most of the variance a prompt's difficulty causes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.config import setting
from policygrad.lm.algorithms.common import group_statistics, optimise, returns_to_go
from policygrad.lm.algorithms.reinforce import ReinforceConfig
from policygrad.lm.rollout import TokenRollout

USES_VALUE_HEAD = False


@dataclass(frozen=True)
class RLOOConfig(ReinforceConfig):
    """RLOO: K ≥ 2 responses per prompt, leave-one-out baseline."""

    prompts_per_update: int = setting(32, lambda v: v > 0, "> 0", "distinct prompts sampled per update")
    samples_per_prompt: int = setting(4, lambda v: v >= 2, ">= 2", "responses per prompt (K)")


def leave_one_out_baseline(returns: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """b_i = mean of ``returns`` (N,) over the other members of i's group, (N,)."""
    sums, counts, _ = group_statistics(returns, group_ids)
    return (sums - returns) / (counts - 1).clamp(min=1)


def advantages(rollout: TokenRollout, cfg: RLOOConfig) -> torch.Tensor:
    """A_t = G_t − b, (N, T)."""
    returns = returns_to_go(rollout)
    baseline = leave_one_out_baseline(returns[:, 0], rollout.group_ids)
    return (returns - baseline.unsqueeze(1)) * rollout.mask


def update(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, rollout: TokenRollout, cfg: RLOOConfig, index: int
) -> dict[str, float]:
    """One policy-gradient step with leave-one-out advantages."""
    return optimise(model, optimizer, rollout, advantages(rollout, cfg), cfg, index)


Config = RLOOConfig
