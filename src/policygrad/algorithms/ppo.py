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

from policygrad.algorithms.a2c import A2CConfig
from policygrad.algorithms.common import gae_advantages
from policygrad.config import non_negative, positive, setting
from policygrad.errors import PolicygradError
from policygrad.learners import Batch, Learner, LossTerms, StepMetrics
from policygrad.losses import explained_variance, normalize_rows
from policygrad.rollout import Rollout
from policygrad.seeding import Stream, stream_seed

COLLECT = "steps"
USES_CRITIC = True


@dataclass(frozen=True)
class PPOConfig(A2CConfig):
    """Proximal policy optimisation with the clipped objective."""

    rollout_steps: int = setting(128, positive, "> 0", "steps per environment between updates (T)")
    learning_rate: float = setting(3e-4, positive, "> 0", "Adam learning rate")
    update_epochs: int = setting(4, positive, "> 0", "passes over each batch")
    minibatch_size: int = setting(256, positive, "> 0", "samples per minibatch; must divide num_envs × rollout_steps")
    clip_coef: float = setting(0.2, positive, "> 0", "ε of the clipped ratio")
    anneal_clip: bool = setting(
        False, help="decay clip_coef linearly to 0 over total_steps (the RL zoo's clip_range: lin_X)"
    )
    clip_value_loss: bool = setting(False, help="clip the value loss around the collected values")
    normalize_advantages: bool = setting(True, help="standardise advantages in each minibatch")
    target_kl: float | None = setting(None, help="stop the epochs early once approx KL exceeds this")

    def validate(self) -> None:
        super().validate()
        batch = self.num_envs * self.rollout_steps
        if batch % self.minibatch_size != 0:
            raise PolicygradError(
                f"invalid minibatch_size = {self.minibatch_size}: it must divide the batch num_envs × rollout_steps"
                f" = {self.num_envs} × {self.rollout_steps} = {batch} (try --set minibatch_size="
                f"{_largest_divisor(batch, self.minibatch_size)})"
            )
        sequences, leftover = divmod(self.minibatch_size, self.rollout_steps)
        if self.policy == "lstm" and (leftover != 0 or self.num_envs % sequences != 0):
            raise PolicygradError(
                f"invalid minibatch_size = {self.minibatch_size}: with policy=lstm a minibatch is whole sequences, a"
                f" multiple of rollout_steps = {self.rollout_steps} that divides the batch (try --set minibatch_size="
                f"{self.rollout_steps * _largest_divisor(self.num_envs, max(sequences, 1))})"
            )
        if self.target_kl is not None and not non_negative(self.target_kl):
            raise PolicygradError(f"invalid target_kl = {self.target_kl}: allowed >= 0 or none")


def _largest_divisor(batch: int, at_most: int) -> int:
    return max(d for d in range(1, min(batch, at_most) + 1) if batch % d == 0)


def advantages(rollout: Rollout, cfg: PPOConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(λ), as A2C; standardised per minibatch in :func:`update` (if ``normalize_advantages``), not here."""
    return gae_advantages(rollout, cfg.gamma, cfg.gae_lambda)


#: Advantages are standardised in each minibatch, not over the batch (read by the diagnostics).
NORMALIZES_EACH_MINIBATCH = True
#: The most bytes one gather of the shuffled batch copies. Every epoch's shuffle is gathered at
#: once (one indexing per field: the fastest for small observations) unless the copy would pass
#: this — 4 epochs of 1,024 Atari frames (4×84×84 float32) would copy 462 MB, 4× the rollout;
#: then as many minibatches per gather as fit, at least one (docs/performance.md, "Memory").
GATHER_BYTES = 64 * 2**20


def update(learner: Learner, rollout: Rollout, cfg: PPOConfig, update_index: int) -> dict[str, float]:
    """``update_epochs`` epochs of clipped-surrogate minibatch steps on one (N, T) rollout.

    A recurrent agent's batch holds N whole sequences (:class:`Batch`): the shuffle then draws
    environments, and each minibatch is ``minibatch_size / T`` of them with all their T steps,
    replayed from the rollout's initial state (CleanRL's ppo_atari_lstm does the same).
    """
    batch = Batch.of(rollout, *advantages(rollout, cfg))
    per_row = batch.mask[0].numel()  # samples per row of the batch: 1, or T for sequences
    terms = LossTerms(
        vf_coef=cfg.vf_coef,
        ent_coef=cfg.ent_coef,
        max_grad_norm=cfg.max_grad_norm,
        clip_coef=cfg.clip_coef,
        value_clip=cfg.clip_coef if cfg.clip_value_loss else None,
        joint_clip=cfg.grad_clip == "joint",
    )
    # Every epoch's shuffle, drawn up front in epoch order from the stream keyed by (seed, update),
    # so a resumed run shuffles identically; gathered (at once, up to GATHER_BYTES), then cut into minibatches.
    generator = torch.Generator().manual_seed(stream_seed(cfg.seed, Stream.MINIBATCH_ORDER, update_index))
    orders = torch.stack([torch.randperm(len(batch), generator=generator) for _ in range(cfg.update_epochs)])
    rows = cfg.minibatch_size // per_row  # batch rows per minibatch: samples, or whole sequences
    per_epoch = len(batch) // rows
    minibatch_orders = orders.reshape(-1, rows)  # every epoch's minibatches, in order
    per_gather = max(1, GATHER_BYTES * per_epoch // max(batch.nbytes(), 1))
    steps: list[StepMetrics] = []
    epoch_steps: list[StepMetrics] = []
    epochs_run, stopped = 0, False
    for first in range(0, len(minibatch_orders), per_gather):
        minibatches, has_samples = shuffled_minibatches(batch, minibatch_orders[first : first + per_gather], cfg)
        for index, (minibatch, has_sample) in enumerate(zip(minibatches, has_samples, strict=True), start=first):
            if has_sample:  # a minibatch of padding alone is skipped
                epoch_steps.append(learner.step(minibatch, terms))
            if (index + 1) % per_epoch:
                continue
            epochs_run += 1
            steps += epoch_steps
            # Target-KL early stop: the epoch's mean KL (measured before each step) left the trust region.
            if cfg.target_kl is not None and epoch_steps:
                stopped = sum(s.approx_kl for s in epoch_steps) / len(epoch_steps) > cfg.target_kl
            epoch_steps = []
            if stopped:
                break
        del minibatches, minibatch  # freed before the next gather, so at most one gather's copy is held
        if stopped:
            break
    metrics = StepMetrics.mean(steps) if steps else {}
    metrics["explained_variance"] = explained_variance(batch.old_values, batch.returns, batch.mask)
    metrics["epochs"] = float(epochs_run)
    return metrics


def shuffled_minibatches(batch: Batch, orders: torch.Tensor, cfg: PPOConfig) -> tuple[list[Batch], list[bool]]:
    """The minibatches whose batch rows are ``orders`` (M, rows), gathered at once, and which hold any sample.

    Advantages are standardised within each minibatch when ``cfg.normalize_advantages``.
    """
    shuffled = batch.take(orders.reshape(-1))
    size = cfg.minibatch_size
    if cfg.normalize_advantages:  # standardised within each minibatch
        rows = shuffled.advantages.view(-1, size)
        normalized = normalize_rows(rows, shuffled.mask.view(-1, size))
        shuffled = shuffled.with_advantages(normalized.reshape(shuffled.advantages.shape))
    return list(shuffled.split(orders.shape[1])), shuffled.mask.view(-1, size).any(1).tolist()


Config = PPOConfig
