"""A fused step's metrics, kept as per-sample tensors and reduced when they are read.

A PPO update takes tens of minibatch steps; reducing each step's five metrics as it goes
costs about a dozen small tensor ops per step, a seventh of a 256-sample step. The fused
learner instead keeps what the metrics need (log π, the old log π, the advantages, the
weights, V − R, the entropy's inputs) and :meth:`DeferredStepMetrics.mean_of` reduces all
the steps of an update in one set of batched ops. The numbers are the autograd learner's
metrics (each minibatch's, before its step, averaged), tested equal in tests/test_learners.py.
Reading one step's ``approx_kl`` (PPO's target-KL stop) reduces that step alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from policygrad.kernels.fused_agent import LOG_SQRT_2PI
from policygrad.learners import LossTerms


class DeferredStepMetrics:
    """The named metrics of one fused step (the fields of :class:`policygrad.learners.StepMetrics`)."""

    def __init__(
        self,
        terms: LossTerms,
        weight: torch.Tensor,
        log_probs: torch.Tensor,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
        entropy_input: torch.Tensor,
        error: torch.Tensor | None,
        grad_norm: float,
        kl_after_step: float | None,
        discrete: bool,
    ) -> None:
        self.terms, self.weight, self.log_probs, self.old_log_probs = terms, weight, log_probs, old_log_probs
        self.advantages, self.entropy_input, self.error, self.grad_norm = advantages, entropy_input, error, grad_norm
        self.kl_after_step, self.discrete = kl_after_step, discrete

    @property
    def approx_kl(self) -> float:
        """The k3 KL of this step (after it where the terms ask for that)."""
        if self.kl_after_step is not None:
            return self.kl_after_step
        log_ratio = self.log_probs - self.old_log_probs
        return torch.dot(torch.expm1(log_ratio) - log_ratio, self.weight).item()

    def as_dict(self) -> dict[str, float]:
        return self.mean_of([self])

    @staticmethod
    def mean_of(steps: Sequence[DeferredStepMetrics]) -> dict[str, float]:
        """Each metric of each step (a masked mean over its samples), averaged over the steps, in batched ops."""
        first, terms = steps[0], steps[0].terms
        weight = torch.stack([s.weight for s in steps])  # (S, B)
        log_probs = torch.stack([s.log_probs for s in steps])
        log_ratio = log_probs - torch.stack([s.old_log_probs for s in steps])
        advantages = torch.stack([s.advantages for s in steps])
        rows = {"approx_kl": torch.expm1(log_ratio) - log_ratio}
        if terms.clip_coef is None:
            rows["policy_loss"] = -(log_probs * advantages)
        else:
            ratio = log_ratio.exp()
            clipped_ratio = ratio.clamp(1.0 - terms.clip_coef, 1.0 + terms.clip_coef)
            rows["policy_loss"] = -torch.minimum(ratio * advantages, clipped_ratio * advantages)
            rows["clip_fraction"] = ratio.ne(clipped_ratio).to(ratio.dtype)  # |ρ − 1| > ε
        entropy_input = torch.stack([s.entropy_input for s in steps])
        if first.discrete:  # the log-softmax (S, A, B): H = −Σ_a p log p
            rows["entropy"] = -(entropy_input.exp() * entropy_input).sum(1)
        else:  # log σ (S, A): the same entropy for every sample
            rows["entropy"] = (entropy_input + (0.5 + LOG_SQRT_2PI)).sum(1, keepdim=True).expand_as(weight)
        if first.error is not None:
            rows["value_loss"] = 0.5 * torch.stack([s.error for s in steps]).square()
        names = list(rows)
        means = (torch.stack([rows[n] for n in names]) * weight).sum(2).mean(1).tolist()
        out = dict(zip(names, means, strict=True))
        if any(s.kl_after_step is not None for s in steps):
            out["approx_kl"] = math.fsum(s.approx_kl for s in steps) / len(steps)
        out["grad_norm"] = math.fsum(s.grad_norm for s in steps) / len(steps)
        return out


__all__ = ["DeferredStepMetrics"]
