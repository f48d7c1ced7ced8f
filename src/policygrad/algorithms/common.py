"""The pieces every algorithm composes: one gradient step, and the advantage actor-critic update.

REINFORCE, its baseline, Actor-Critic and A2C all run :func:`actor_critic_update`; they
differ only in the arguments (λ, whether there is a critic), which is the point of the
chain. PPO reuses the same advantages and losses with a different objective.
"""

from __future__ import annotations

import torch
from torch import nn

from policygrad import fast
from policygrad.advantages import gae
from policygrad.agent import Agent
from policygrad.errors import NonFiniteLossError
from policygrad.losses import (
    entropy_bonus,
    explained_variance,
    masked_mean,
    normalize,
    policy_gradient_loss,
    value_loss,
)
from policygrad.rollout import Rollout


def gradient_step(agent: Agent, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float) -> float:
    """Backpropagate, clip, and step; returns the gradient norm before clipping.

    Actor and critic are separate networks, so their gradients are clipped separately:
    a large value-loss gradient early in training must not shrink the policy's step.
    Raises :class:`NonFiniteLossError` before touching the weights if anything is NaN/inf.
    """
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    total = 0.0
    for group in _parameter_groups(agent):
        if max_grad_norm > 0:
            norm = nn.utils.clip_grad_norm_(group, max_grad_norm)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in group if p.grad is not None]))
        if not torch.isfinite(norm):
            raise NonFiniteLossError(f"gradient norm became {norm.item()}")
        total += norm.item() ** 2
    optimizer.step()
    return total**0.5


def _parameter_groups(agent: Agent) -> list[list[nn.Parameter]]:
    critic = list(agent.critic.parameters()) if agent.critic is not None else []
    critic_ids = {id(p) for p in critic}
    actor = [p for p in agent.parameters() if id(p) not in critic_ids]
    return [actor, critic] if critic else [actor]


def advantages_and_returns(rollout: Rollout, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(λ) over the rollout with its stored values (zeros without a critic)."""
    return gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, gamma, lam)


def post_update_kl(
    agent: Agent, obs: torch.Tensor, actions: torch.Tensor, old_log_probs: torch.Tensor, mask: torch.Tensor
) -> float:
    """How far one update moved the policy on its own batch: the k3 estimate of KL(old ‖ new)."""
    with torch.no_grad():
        log_ratio = agent.distribution(obs).log_prob(actions) - old_log_probs
        return masked_mean(log_ratio.exp() - 1.0 - log_ratio, mask).item()


def actor_critic_update(
    agent: Agent,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    *,
    gamma: float,
    lam: float,
    vf_coef: float,
    ent_coef: float,
    max_grad_norm: float,
    normalize_advantages: bool = False,
    fused: bool = True,
) -> dict[str, float]:
    """One gradient step on ``−log π · A + vf_coef · ½(V − R)² − ent_coef · H``.

    With no critic the values are zeros, λ = 1 gives A = G_t, and the value term is
    skipped: that is REINFORCE. The caller chooses λ; everything else is shared.

    ``fused`` runs the same step through :mod:`policygrad.fast` (a written-out backward
    and a flat Adam, equal up to float rounding) where the agent allows; the code below
    is its autograd reference.
    """
    advantages, returns = advantages_and_returns(rollout, gamma, lam)
    obs, actions = rollout.flat("observations"), rollout.flat("actions")
    mask, advantages, returns = rollout.mask.reshape(-1), advantages.reshape(-1), returns.reshape(-1)
    if normalize_advantages:
        advantages = normalize(advantages, mask)
    learner = fast.learner(agent, optimizer) if fused else None
    if learner is not None:
        metrics = fast.actor_critic_step(
            *learner,
            optimizer,
            obs,
            actions,
            advantages,
            returns,
            mask,
            rollout.flat("log_probs"),
            rollout.flat("values"),
            vf_coef=vf_coef if agent.critic is not None else 0.0,
            ent_coef=ent_coef,
            max_grad_norm=max_grad_norm,
        )  # explained_variance included where there is a critic
        return metrics
    log_probs, entropy, values = agent.evaluate(obs, actions)
    loss, metrics = policy_gradient_loss(log_probs, advantages, mask)
    ent, ent_metrics = entropy_bonus(entropy, mask)
    metrics.update(ent_metrics)
    loss = loss - ent_coef * ent
    if values is not None:
        v_loss, v_metrics = value_loss(values, returns, mask)
        loss = loss + vf_coef * v_loss
        metrics.update(v_metrics)
        metrics["explained_variance"] = explained_variance(rollout.values.reshape(-1), returns, mask)
    metrics["grad_norm"] = gradient_step(agent, optimizer, loss, max_grad_norm)
    metrics["approx_kl"] = post_update_kl(agent, obs, actions, rollout.flat("log_probs"), mask)
    return metrics
