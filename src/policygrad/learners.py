"""The learner: one minibatch's loss terms → gradient → optimiser step → named metrics.

Every algorithm of the chain owns its whole update — which advantages, how many epochs,
which minibatches in which order, when to stop early — and hands each minibatch to a
learner. The learner is the only part that may be swapped for speed:

- :class:`AutogradLearner` (this module) is the reference: the loss is composed from
  :mod:`policygrad.losses`, autograd differentiates it, and the optimiser steps;
- the fused learners of :mod:`policygrad.kernels` compute the same step with written-out
  gradients, and tests hold them equal to this one (``tests/test_learners.py``).

``kernels.select`` picks the learner once per run (the trainer asks; algorithms never do).
In the shape of ``torch.optim.Adam``'s reference, foreach and fused implementations: the
algorithm is written once, above the choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Protocol

import torch
from torch import nn

from policygrad.agent import Agent
from policygrad.errors import NonFiniteLossError
from policygrad.losses import (
    clipped_surrogate_loss,
    entropy_bonus,
    masked_mean,
    policy_gradient_loss,
    value_loss,
)
from policygrad.rollout import Rollout


@dataclass(frozen=True)
class LossTerms:
    """What one step minimises: ``L = L_policy + vf_coef · L_V − ent_coef · H`` (masked means).

    ``clip_coef`` None: ``L_policy = −E[log π(a|s) · A]`` (the score-function loss);
    otherwise PPO's clipped surrogate ``−E[min(ρA, clip(ρ, 1 ± ε)A)]``. ``value_clip`` (PPO's
    optional clipped value loss) keeps V within ±value_clip of the value at collection.
    ``kl_after_step`` measures ``approx_kl`` after the step instead of before it: for an
    algorithm that takes one step on fresh data the KL before it is 0 by construction.
    Without a critic the value term is skipped whatever ``vf_coef`` says. ``joint_clip`` clips
    the gradient norm of all parameters together (Stable-Baselines3) instead of each network's.
    """

    vf_coef: float
    ent_coef: float
    max_grad_norm: float
    clip_coef: float | None = None
    value_clip: float | None = None
    kl_after_step: bool = False
    joint_clip: bool = False


@dataclass(frozen=True)
class Batch:
    """A flat batch of B samples, everything a step's loss needs.

    observations (B, obs_dim), actions (B,) or (B, action_dim), old_log_probs (B,) and
    old_values (B,) at collection, advantages (B,), returns (B,) the critic's targets, mask
    (B,) bool of valid samples (padding never counts).

    A batch of a recurrent agent holds whole sequences instead: every field is (M, T, ...), and
    ``initial_state`` (M, rows, hidden) and ``episode_starts`` (M, T) let the agent replay them
    (:mod:`policygrad.recurrent`). ``take`` and ``split`` then pick and cut sequences, not steps.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor
    action_masks: torch.Tensor | None = None  # (B, width) bool: the actions the env allowed (None: no mask)
    initial_state: torch.Tensor | None = None  # (M, rows, hidden): a recurrent agent's state at each sequence's start
    episode_starts: torch.Tensor | None = None  # (M, T) bool: the steps that begin an episode

    @classmethod
    def of(cls, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> Batch:
        """The (N, T) rollout flattened to N·T samples, with its advantages and returns (N, T).

        A rollout of a recurrent agent (with ``initial_state``) stays (N, T): N whole sequences.
        """
        if rollout.initial_state is not None:
            return cls(
                observations=rollout.observations,
                actions=rollout.actions,
                old_log_probs=rollout.log_probs,
                old_values=rollout.values,
                advantages=advantages,
                returns=returns,
                mask=rollout.mask,
                action_masks=rollout.action_masks,
                initial_state=rollout.initial_state,
                episode_starts=rollout.episode_starts,
            )
        return cls(
            observations=rollout.flat("observations"),
            actions=rollout.flat("actions"),
            old_log_probs=rollout.flat("log_probs"),
            old_values=rollout.flat("values"),
            advantages=advantages.reshape(-1),
            returns=returns.reshape(-1),
            mask=rollout.mask.reshape(-1),
            action_masks=rollout.flat("action_masks"),
        )

    def __len__(self) -> int:
        return self.mask.shape[0]

    def nbytes(self) -> int:
        """The bytes its tensors hold (views count in full: the size of a copy of the batch)."""
        tensors = (getattr(self, f.name) for f in fields(self))
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def take(self, index: torch.Tensor) -> Batch:
        """The samples at ``index`` (a permutation, or any index tensor), in that order."""
        return Batch(*(None if (t := getattr(self, f.name)) is None else t[index] for f in fields(self)))

    def split(self, size: int) -> Iterator[Batch]:
        """Consecutive minibatches of ``size`` samples (views, no copies)."""
        columns = [getattr(self, f.name) for f in fields(self)]
        pieces = [[None] * -(-len(self) // size) if c is None else c.split(size) for c in columns]
        for row in zip(*pieces, strict=True):
            yield Batch(*row)

    def with_advantages(self, advantages: torch.Tensor) -> Batch:
        return replace(self, advantages=advantages)

    @property
    def memory(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(initial_state, episode_starts)`` for a batch of sequences (:meth:`Agent.evaluate`), else None."""
        if self.initial_state is None or self.episode_starts is None:
            return None
        return self.initial_state, self.episode_starts


@dataclass(frozen=True)
class StepMetrics:
    """What one step measured, at the parameters before it (``approx_kl``: see :class:`LossTerms`).

    ``value_loss`` is None without a critic, ``clip_fraction`` None without a clipped objective.
    """

    policy_loss: float
    entropy: float
    approx_kl: float
    grad_norm: float
    value_loss: float | None = None
    clip_fraction: float | None = None

    def as_dict(self) -> dict[str, float]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    @staticmethod
    def mean(steps: Sequence[StepMetrics]) -> dict[str, float]:
        """Each metric averaged over the steps of an update.

        A learner may return records that reduce their metrics when read (the fused learner's
        ``DeferredStepMetrics``): their own ``mean_of`` averages them in batched ops.
        """
        if steps and hasattr(steps[0], "mean_of"):
            return steps[0].mean_of(steps)  # type: ignore[attr-defined]
        totals: dict[str, float] = {}
        for step in steps:
            for name, value in step.as_dict().items():
                totals[name] = totals.get(name, 0.0) + value
        return {name: total / len(steps) for name, total in totals.items()}


class Learner(Protocol):
    """One optimisation step on a minibatch; ``name`` says which implementation (e.g. ``fused-mlp``)."""

    name: str

    def step(self, batch: Batch, terms: LossTerms) -> StepMetrics: ...


class AutogradLearner:
    """The reference learner: the loss from :mod:`policygrad.losses`, autograd, the optimiser's ``step``."""

    name = "autograd"

    def __init__(self, agent: Agent, optimizer: torch.optim.Optimizer) -> None:
        self.agent, self.optimizer = agent, optimizer

    def step(self, batch: Batch, terms: LossTerms) -> StepMetrics:
        """Minimise ``terms`` on ``batch`` by one gradient step; raises before stepping on a NaN/inf."""
        mask = batch.mask
        memory = batch.memory
        log_probs, entropy, values = self.agent.evaluate(batch.observations, batch.actions, batch.action_masks, memory)
        if terms.clip_coef is None:
            loss, metrics = policy_gradient_loss(log_probs, batch.advantages, mask)
        else:
            loss, metrics = clipped_surrogate_loss(
                log_probs, batch.old_log_probs, batch.advantages, terms.clip_coef, mask
            )
        mean_entropy, entropy_metrics = entropy_bonus(entropy, mask)
        metrics.update(entropy_metrics)
        loss = loss - terms.ent_coef * mean_entropy
        if values is not None:
            v_loss, v_metrics = value_loss(values, batch.returns, mask, batch.old_values, terms.value_clip)
            loss = loss + terms.vf_coef * v_loss
            metrics.update(v_metrics)
        if "approx_kl" not in metrics and not terms.kl_after_step:
            metrics["approx_kl"] = _k3_kl(log_probs.detach(), batch.old_log_probs, mask)
        metrics["grad_norm"] = gradient_step(self.agent, self.optimizer, loss, terms.max_grad_norm, terms.joint_clip)
        if terms.kl_after_step:
            observations, actions, action_masks = batch.observations, batch.actions, batch.action_masks
            with torch.no_grad():
                if memory is None:
                    new_log_probs = self.agent.distribution(observations, action_masks).log_prob(actions)
                else:  # sequences: replayed through the updated LSTM
                    new_log_probs = self.agent.evaluate(observations, actions, action_masks, memory)[0]
            metrics["approx_kl"] = _k3_kl(new_log_probs, batch.old_log_probs, mask)
        return StepMetrics(**metrics)


def _k3_kl(log_probs: torch.Tensor, old_log_probs: torch.Tensor, mask: torch.Tensor) -> float:
    """The k3 estimate of KL(old ‖ new), E[(ρ − 1) − log ρ] (Schulman 2020): unbiased and ≥ 0."""
    log_ratio = log_probs - old_log_probs
    return masked_mean(torch.expm1(log_ratio) - log_ratio, mask).item()


def gradient_step(
    agent: Agent, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float, joint: bool = False
) -> float:
    """Backpropagate, clip, and step; returns the gradient norm before clipping.

    Actor and critic are separate networks, so by default their gradients are clipped separately:
    a large value-loss gradient early in training must not shrink the policy's step. ``joint``
    clips the norm of all of them together instead, as Stable-Baselines3 does (``grad_clip=joint``).
    Raises :class:`NonFiniteLossError` before touching the weights if anything is NaN/inf.
    """
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    total = 0.0
    groups = [list(agent.parameters())] if joint else parameter_groups(agent)
    for group in groups:
        if max_grad_norm > 0:
            norm = nn.utils.clip_grad_norm_(group, max_grad_norm)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in group if p.grad is not None]))
        if not torch.isfinite(norm):
            raise NonFiniteLossError(f"gradient norm became {norm.item()}")
        total += norm.item() ** 2
    optimizer.step()
    return math.sqrt(total)


def parameter_groups(agent: Agent) -> list[list[nn.Parameter]]:
    """The actor's parameters (with ``log_std``), then the critic's if there is one: each is clipped alone."""
    critic = agent.critic_parameters()
    critic_ids = {id(p) for p in critic}
    actor = [p for p in agent.parameters() if id(p) not in critic_ids]
    return [actor, critic] if critic else [actor]


__all__ = ["AutogradLearner", "Batch", "Learner", "LossTerms", "StepMetrics", "gradient_step", "parameter_groups"]
