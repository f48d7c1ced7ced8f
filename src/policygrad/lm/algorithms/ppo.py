"""PPO for language models, the classic RLHF recipe (Ziegler et al. 2019; Ouyang et al. 2022).

Δ from grpo: a learned critic replaces the group baseline. A value head on the policy
reads V(x, y_<t) at every token, advantages are per-token GAE over the response,

    δ_t = r_t + γ V_{t+1} − V_t,   A_t = δ_t + γλ A_{t+1}     (terminal after the last token)

with r_t = −β·k1_t plus the task reward on the last token (the KL goes back into the
reward), and the clipped surrogate plus a value loss runs ``update_epochs`` passes of
``minibatches`` steps. One response per prompt suffices: the critic supplies the
baseline that RLOO and GRPO took from K samples. γ = λ = 1 is the default: a token-level
critic with λ < 1 bootstraps from a value head that is still wrong, and a prototype with
λ = 0.95 stalled well below the optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.advantages import gae
from policygrad.config import non_negative, positive, setting, unit_closed, unit_open_closed
from policygrad.lm.algorithms.common import optimise
from policygrad.lm.algorithms.grpo import GRPOConfig
from policygrad.lm.rollout import TokenRollout
from policygrad.losses import normalize

USES_VALUE_HEAD = True


@dataclass(frozen=True)
class PPOConfig(GRPOConfig):
    """PPO: value head, per-token GAE(γ, λ), clipped ratio, several epochs, KL in the reward."""

    prompts_per_update: int = setting(64, positive, "> 0", "distinct prompts sampled per update")
    samples_per_prompt: int = setting(1, positive, "> 0", "responses per prompt")
    kl_in: str = setting("reward", lambda v: v in ("reward", "loss"), "reward or loss", "where the KL penalty goes")
    update_epochs: int = setting(2, positive, "> 0", "passes over each batch")
    minibatches: int = setting(2, positive, "> 0", "gradient steps per pass")
    gamma: float = setting(1.0, unit_open_closed, "(0, 1]", "discount over tokens")
    gae_lambda: float = setting(1.0, unit_closed, "[0, 1]", "GAE λ over tokens")
    vf_coef: float = setting(0.5, non_negative, ">= 0", "value-loss coefficient")
    value_clip: float | None = setting(None, help="clip value updates to ± this around the sampled values")
    normalize_advantages: bool = setting(True, help="standardise advantages over the batch")


def advantages_and_returns(rollout: TokenRollout, cfg: PPOConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token GAE advantages and λ-returns (the value targets), each (N, T)."""
    advantages, returns = gae(
        rollout.rewards,
        rollout.values,
        rollout.next_values,
        rollout.terminated,
        rollout.done,
        cfg.gamma,
        cfg.gae_lambda,
    )
    if cfg.normalize_advantages:
        advantages = normalize(advantages, rollout.mask)
    return advantages * rollout.mask, returns


def update(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, rollout: TokenRollout, cfg: PPOConfig, index: int
) -> dict[str, float]:
    """Clipped surrogate + value loss, ``update_epochs`` × ``minibatches`` steps."""
    advantages, returns = advantages_and_returns(rollout, cfg)
    return optimise(
        model,
        optimizer,
        rollout,
        advantages,
        cfg,
        index,
        clip_coef=cfg.epsilon_low,
        clip_high=cfg.clip_high,
        epochs=cfg.update_epochs,
        minibatches=cfg.minibatches,
        returns=returns,
        vf_coef=cfg.vf_coef,
        value_clip=cfg.value_clip,
    )


Config = PPOConfig
