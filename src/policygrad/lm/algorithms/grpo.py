"""GRPO = RLOO's group baseline, normalised, + PPO's clipped ratio + the KL in the loss (Shao et al. 2024).

Δ from rloo: the advantage of response i is its group-normalised return

    A_i = (R_i − mean_g R) / (std_g R + ε)        (std division optional)

the update maximises the clipped surrogate min(ρA, clip(ρ, 1 ± ε)A) for
``update_epochs`` passes, and the KL to the reference is a loss term β·k3 rather than
a reward. Where the normalisations cost bias (measured in :mod:`policygrad.lm.exact`):

- the group mean includes R_i itself, so A_i = (K−1)/K · (R_i − leave-one-out mean):
  unbiased direction, gradient shrunk by (K−1)/K;
- dividing by the group's std re-weights prompts (groups with little spread get large
  steps) and couples A_i to R_i through the std: a biased estimate of ∇E[R];
- k3 as a loss has gradient ∇KL(π_ref‖π) per token, not ∇KL(π‖π_ref).

Why the loss reads ≈ 0 while learning works: advantages are centred within every
group, and at ρ = 1 the surrogate is Σ A_i·1 = 0 up to token weighting, so the number
printed is ~0; its gradient Σ A_i ∇log π(y_i) is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.config import positive, setting
from policygrad.lm.algorithms.common import group_statistics, optimise, returns_to_go
from policygrad.lm.algorithms.rloo import RLOOConfig
from policygrad.lm.rollout import TokenRollout

USES_VALUE_HEAD = False


@dataclass(frozen=True)
class GRPOConfig(RLOOConfig):
    """GRPO: group-normalised advantages, clipped ratio, KL (k3) in the loss."""

    kl_in: str = setting("loss", lambda v: v in ("reward", "loss"), "reward or loss", "where the KL penalty goes")
    clip_coef: float = setting(0.2, positive, "> 0", "ε of the clipped ratio")
    update_epochs: int = setting(1, positive, "> 0", "passes over each batch")
    minibatches: int = setting(1, positive, "> 0", "gradient steps per pass")
    scale_by_std: bool = setting(True, help="divide advantages by the group's reward std")
    std_eps: float = setting(1e-4, positive, "> 0", "ε added to the group std")


def group_normalised(returns: torch.Tensor, group_ids: torch.Tensor, scale_by_std: bool, eps: float) -> torch.Tensor:
    """(R_i − mean_g R) / (std_g R + ε) for ``returns`` (N,); std is the population std of the group."""
    sums, counts, squares = group_statistics(returns, group_ids)
    mean = sums / counts
    centred = returns - mean
    if not scale_by_std:
        return centred
    std = (squares / counts - mean * mean).clamp(min=0.0).sqrt()
    return centred / (std + eps)


def advantages(rollout: TokenRollout, cfg: GRPOConfig) -> torch.Tensor:
    """Group-normalised sequence return broadcast to every token, (N, T)."""
    sequence_returns = returns_to_go(rollout)[:, 0]
    normalised = group_normalised(sequence_returns, rollout.group_ids, cfg.scale_by_std, cfg.std_eps)
    return normalised.unsqueeze(1) * rollout.mask


def update(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, rollout: TokenRollout, cfg: GRPOConfig, index: int
) -> dict[str, float]:
    """``update_epochs`` × ``minibatches`` clipped-surrogate steps."""
    return optimise(
        model,
        optimizer,
        rollout,
        advantages(rollout, cfg),
        cfg,
        index,
        clip_coef=cfg.clip_coef,
        epochs=cfg.update_epochs,
        minibatches=cfg.minibatches,
    )


Config = GRPOConfig
