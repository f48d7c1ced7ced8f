"""What the first four steps of the chain share: advantages by GAE, and one gradient step per batch.

REINFORCE, its baseline, Actor-Critic and A2C each take one step on their whole batch;
they differ only in their ``advantages(rollout, cfg)`` (λ, whether there is a critic),
which is the point of the chain. PPO reuses the advantages and the learner with its own
epochs and minibatches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from policygrad.advantages import gae
from policygrad.learners import Batch, Learner, LossTerms
from policygrad.losses import explained_variance
from policygrad.rollout import Rollout

#: An algorithm's advantage rule: ``(advantages, returns)``, both (N, T), from a rollout and its config.
AdvantageRule = Callable[[Rollout, Any], tuple[torch.Tensor, torch.Tensor]]


def gae_advantages(rollout: Rollout, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(λ) over the rollout with its stored values (zeros without a critic): (advantages, returns)."""
    return gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, gamma, lam)


def one_step_update(
    learner: Learner, rollout: Rollout, cfg: Any, advantages: AdvantageRule, vf_coef: float
) -> dict[str, float]:
    """One gradient step on ``−log π · A + vf_coef · ½(V − R)² − ent_coef · H`` over the whole batch.

    With no critic the values are zeros and the value term is skipped: that is REINFORCE.
    ``approx_kl`` is measured after the step (before it, on fresh data, it is 0).
    """
    batch = Batch.of(rollout, *advantages(rollout, cfg))
    terms = LossTerms(
        vf_coef=vf_coef,
        ent_coef=cfg.ent_coef,
        max_grad_norm=cfg.max_grad_norm,
        kl_after_step=True,
        joint_clip=cfg.grad_clip == "joint",
    )
    metrics = learner.step(batch, terms).as_dict()
    if "value_loss" in metrics:  # how much of the returns' variance the critic explained at collection
        metrics["explained_variance"] = explained_variance(batch.old_values, batch.returns, batch.mask)
    return metrics
