"""PPO (Schulman et al. 2017): A2C + a clipped trust region, so each batch can be reused.

Δ from A2C: instead of one gradient step per batch, ``update_epochs`` passes over it in
minibatches, each maximising the clipped surrogate
min(ρ A, clip(ρ, 1 − ε, 1 + ε) A) with ρ = π_θ/π_old, which stops rewarding a move
once the policy has left the trust region. Extras practitioners expect: advantage
normalisation per minibatch, optional value clipping, and a target-KL early stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad import fast
from policygrad.agent import Agent
from policygrad.algorithms.a2c import A2CConfig
from policygrad.algorithms.common import advantages_and_returns, gradient_step
from policygrad.config import _checked, _non_negative, _positive
from policygrad.errors import PolicygradError
from policygrad.losses import (
    clipped_surrogate_loss,
    entropy_bonus,
    explained_variance,
    normalize,
    value_loss,
)
from policygrad.rollout import Rollout, _stream_seed

COLLECT = "steps"
USES_CRITIC = True


@dataclass(frozen=True)
class PPOConfig(A2CConfig):
    """Proximal policy optimisation with the clipped objective."""

    rollout_steps: int = _checked(128, _positive, "> 0", "steps per environment between updates (T)")
    learning_rate: float = _checked(3e-4, _positive, "> 0", "Adam learning rate")
    update_epochs: int = _checked(4, _positive, "> 0", "passes over each batch")
    minibatch_size: int = _checked(256, _positive, "> 0", "samples per minibatch; must divide num_envs × rollout_steps")
    clip_coef: float = _checked(0.2, _positive, "> 0", "ε of the clipped ratio")
    clip_value_loss: bool = _checked(False, help="clip the value loss around the collected values")
    normalize_advantages: bool = _checked(True, help="standardise advantages in each minibatch")
    target_kl: float | None = _checked(None, help="stop the epochs early once approx KL exceeds this")

    def validate(self) -> None:
        batch = self.num_envs * self.rollout_steps
        if batch % self.minibatch_size != 0:
            raise PolicygradError(
                f"invalid minibatch_size = {self.minibatch_size}: it must divide the batch num_envs × rollout_steps"
                f" = {self.num_envs} × {self.rollout_steps} = {batch} (try --set minibatch_size="
                f"{_largest_divisor(batch, self.minibatch_size)})"
            )
        if self.target_kl is not None and not _non_negative(self.target_kl):
            raise PolicygradError(f"invalid target_kl = {self.target_kl}: allowed >= 0 or none")


def _largest_divisor(batch: int, at_most: int) -> int:
    return max(d for d in range(1, min(batch, at_most) + 1) if batch % d == 0)


def update(
    agent: Agent, optimizer: torch.optim.Optimizer, rollout: Rollout, cfg: PPOConfig, update_index: int
) -> dict[str, float]:
    """``update_epochs`` epochs of clipped-surrogate minibatch steps on one (N, T) rollout."""
    advantages, returns = advantages_and_returns(rollout, cfg.gamma, cfg.gae_lambda)
    obs, actions = rollout.flat("observations"), rollout.flat("actions")
    old_log_probs, old_values = rollout.flat("log_probs"), rollout.flat("values")
    mask, advantages, returns = rollout.mask.reshape(-1), advantages.reshape(-1), returns.reshape(-1)
    batch = mask.shape[0]
    # Minibatch order is keyed by (seed, update), so a resumed run shuffles identically.
    generator = torch.Generator().manual_seed(_stream_seed(cfg.seed, 2, update_index))
    # The same epochs through policygrad.fast (written-out backward, flat Adam; equal up to
    # float rounding) where the agent allows; the loop below is their autograd reference.
    learner = fast.learner(agent, optimizer) if cfg.fused and not cfg.clip_value_loss else None
    if learner is not None:
        out, epochs = fast.ppo_epochs(
            *learner, optimizer, obs, actions, old_log_probs, advantages, returns, mask, cfg, generator
        )
        out["explained_variance"] = explained_variance(old_values, returns, mask)
        out["epochs"] = float(epochs)
        return out
    sums: dict[str, float] = {}
    steps = 0
    for _epoch in range(cfg.update_epochs):
        epoch_kl = []
        for index in torch.randperm(batch, generator=generator).split(cfg.minibatch_size):
            mb_mask = mask[index]
            if not mb_mask.any():
                continue
            mb_adv = normalize(advantages[index], mb_mask) if cfg.normalize_advantages else advantages[index]
            log_probs, entropy, values = agent.evaluate(obs[index], actions[index])
            pg_loss, metrics = clipped_surrogate_loss(log_probs, old_log_probs[index], mb_adv, cfg.clip_coef, mb_mask)
            v_loss, v_metrics = value_loss(
                values, returns[index], mb_mask, old_values[index], cfg.clip_coef if cfg.clip_value_loss else None
            )
            ent, ent_metrics = entropy_bonus(entropy, mb_mask)
            loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * ent
            metrics.update(v_metrics, **ent_metrics)
            metrics["grad_norm"] = gradient_step(agent, optimizer, loss, cfg.max_grad_norm)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            epoch_kl.append(metrics["approx_kl"])
            steps += 1
        if cfg.target_kl is not None and epoch_kl and sum(epoch_kl) / len(epoch_kl) > cfg.target_kl:
            break
    out = {key: value / max(steps, 1) for key, value in sums.items()}
    out["explained_variance"] = explained_variance(old_values, returns, mask)
    out["epochs"] = float(_epoch + 1)
    return out


Config = PPOConfig
