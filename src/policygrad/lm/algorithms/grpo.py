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
from policygrad.lm.losses import check_choice
from policygrad.lm.rollout import TokenRollout

USES_VALUE_HEAD = False


@dataclass(frozen=True)
class GRPOConfig(RLOOConfig):
    """GRPO: group-normalised advantages, clipped ratio, KL (k3) in the loss."""

    kl_in: str = setting("loss", lambda v: v in ("reward", "loss"), "reward or loss", "where the KL penalty goes")
    clip_coef: float = setting(0.2, positive, "> 0", "ε of the clipped ratio (ε_low with epsilon_high)")
    epsilon: float | None = setting(
        None, lambda v: v is None or v > 0, "> 0 or none", "TRL's name for clip_coef; when set it overrides it"
    )
    epsilon_high: float | None = setting(
        None,
        lambda v: v is None or v > 0,
        "> 0 or none",
        "upper clip 1 + ε_high (DAPO's clip-higher, 0.28); cispo: the weight cap ε_max (5.0); none: = ε",
    )
    update_epochs: int = setting(1, positive, "> 0", "passes over each batch")
    minibatches: int = setting(1, positive, "> 0", "gradient steps per pass")
    scale_rewards: str = setting(
        "group",
        lambda v: v in SCALE_REWARDS,
        "group, batch or none",
        "divide advantages by the reward std of the group, of the batch, or not (Dr. GRPO)",
    )
    std_eps: float = setting(1e-4, positive, "> 0", "ε added to the reward std")

    @property
    def epsilon_low(self) -> float:
        """ε_low: ``epsilon`` when set, else ``clip_coef``."""
        return self.epsilon if self.epsilon is not None else self.clip_coef

    @property
    def clip_high(self) -> float:
        """ε_high: ``epsilon_high`` when set, else ε_low (TRL's default)."""
        return self.epsilon_high if self.epsilon_high is not None else self.epsilon_low


SCALE_REWARDS = ("group", "batch", "none")


def sample_std(deviations: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Bessel-corrected std per group from deviations from the group mean, (N,) (TRL's ``nanstd``; 0 for one)."""
    _, counts, squares = group_statistics(deviations, group_ids)
    return (squares / (counts - 1).clamp(min=1.0)).sqrt()


def group_normalised(returns: torch.Tensor, group_ids: torch.Tensor, scale_rewards: str, eps: float) -> torch.Tensor:
    r"""(R_i − mean_g R) / (std R + ε) for ``returns`` (N,), as TRL's GRPOTrainer computes it.

    ``scale_rewards``: ``group`` divides by the group's std (Shao et al. 2024), ``batch``
    by the whole batch's (Lite PPO, arXiv 2508.08221), ``none`` not at all (Liu et al.
    2025, Dr. GRPO: the std re-weights prompts by difficulty). The std is
    Bessel-corrected (TRL's ``nanstd``); the mean is always the group's.
    """
    check_choice(scale_rewards, SCALE_REWARDS, "scale_rewards")
    sums, counts, _ = group_statistics(returns, group_ids)
    centred = returns - sums / counts
    if scale_rewards == "none":
        return centred
    if scale_rewards == "batch":
        std = sample_std(returns - returns.mean(), torch.zeros_like(group_ids))
    else:
        std = sample_std(centred, group_ids)
    return centred / (std + eps)


def advantages(rollout: TokenRollout, cfg: GRPOConfig) -> torch.Tensor:
    """Group-normalised sequence return broadcast to every token, (N, T)."""
    sequence_returns = returns_to_go(rollout)[:, 0]
    normalised = group_normalised(sequence_returns, rollout.group_ids, cfg.scale_rewards, cfg.std_eps)
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
        clip_coef=cfg.epsilon_low,
        clip_high=cfg.clip_high,
        epochs=cfg.update_epochs,
        minibatches=cfg.minibatches,
    )


Config = GRPOConfig
