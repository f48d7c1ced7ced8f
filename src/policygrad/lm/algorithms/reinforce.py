"""REINFORCE on tokens: the policy-gradient theorem with the response's return.

∇J = E[ Σ_t ∇log π_θ(y_t | x, y_<t) · G_t ],  G_t = R(x, y) − β Σ_{t'≥t} k1_{t'}

The per-token KL to the reference is folded into the reward (k1 = log π − log π_ref),
so the objective is E[R] − β·KL(π‖π_ref), and G_t is ``gae`` with λ = 1 and V ≡ 0 —
exactly the Gymnasium REINFORCE. One gradient step per batch of responses; no
baseline, so the estimate is unbiased and noisy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.lm.algorithms.common import optimise, returns_to_go
from policygrad.lm.config import LMTrainConfig
from policygrad.lm.rollout import TokenRollout

USES_VALUE_HEAD = False


@dataclass(frozen=True)
class ReinforceConfig(LMTrainConfig):
    """REINFORCE: one response per prompt, KL in the reward, one step per batch."""


def advantages(rollout: TokenRollout, cfg: ReinforceConfig) -> torch.Tensor:
    """A_t = G_t, (N, T)."""
    return returns_to_go(rollout)


def update(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, rollout: TokenRollout, cfg: ReinforceConfig, index: int
) -> dict[str, float]:
    """One policy-gradient step on the responses in ``rollout``."""
    return optimise(model, optimizer, rollout, advantages(rollout, cfg), cfg, index)


Config = ReinforceConfig
