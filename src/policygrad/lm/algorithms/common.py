"""What every token algorithm composes: returns-to-go, group baselines, and the optimisation epochs.

The algorithms differ only in the advantages they hand to :func:`optimise` and in its
arguments (clipping, epochs, a value loss): the same shape as the Gymnasium chain.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from policygrad.advantages import gae
from policygrad.errors import NonFiniteLossError
from policygrad.lm.generation import score
from policygrad.lm.losses import kl_loss, token_policy_loss
from policygrad.lm.rollout import TokenRollout, ended_with_eos
from policygrad.losses import entropy_bonus, explained_variance, masked_mean, value_loss
from policygrad.seeding import Stream, stream_seed


def returns_to_go(rollout: TokenRollout, gamma: float = 1.0) -> torch.Tensor:
    """G_t = Σ_{t' ≥ t} γ^{t'−t} r_{t'} over each response, (N, T): ``gae`` with λ = 1 and V ≡ 0.

    With the task reward on the last token and −β·k1 per token, G_t = R − β Σ_{t'≥t} k1_{t'}.
    """
    zeros = torch.zeros_like(rollout.rewards)
    advantages, _ = gae(rollout.rewards, zeros, zeros, rollout.terminated, rollout.done, gamma, 1.0)
    return advantages * rollout.mask


def group_statistics(values: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample group sum, group size and group sum of squares of ``values`` (N,), each (N,)."""
    groups = int(group_ids.max().item()) + 1
    sums = torch.zeros(groups, dtype=values.dtype).index_add_(0, group_ids, values)
    squares = torch.zeros(groups, dtype=values.dtype).index_add_(0, group_ids, values * values)
    counts = torch.zeros(groups, dtype=values.dtype).index_add_(0, group_ids, torch.ones_like(values))
    return sums[group_ids], counts[group_ids], squares[group_ids]


def gradient_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float
) -> float:
    """Backpropagate, clip the global gradient norm, step; returns the norm before clipping."""
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if max_grad_norm > 0:
        norm = nn.utils.clip_grad_norm_(params, max_grad_norm)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    if not torch.isfinite(norm):
        raise NonFiniteLossError(f"gradient norm became {norm.item()}")
    optimizer.step()
    return norm.item()


def minibatch_loss(
    model: nn.Module,
    rollout: TokenRollout,
    index: torch.Tensor,
    advantages: torch.Tensor,
    cfg: Any,
    *,
    clip_coef: float | None = None,
    clip_high: float | None = None,
    returns: torch.Tensor | None = None,
    vf_coef: float = 0.0,
    value_clip: float | None = None,
    step_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss on the responses ``index`` of ``rollout``, and its metrics.

    policy term (:func:`~policygrad.lm.losses.token_policy_loss`, clipped to
    [1 − ``clip_coef``, 1 + ``clip_high``] when ``clip_coef`` is given, aggregated by
    ``cfg.reduction``) + β·KL term when ``cfg.kl_in == "loss"`` + ``vf_coef``·value loss
    when ``returns`` are given − ``cfg.ent_coef``·entropy. ``step_tokens``: the
    ``batch-token-mean`` denominator. With ``cfg.mask_truncated_completions`` responses cut
    at the budget take no part in the loss.
    """
    mask = loss_mask(rollout, cfg)[index]
    scores = score(model, rollout.prompts[index], rollout.actions[index], with_entropy=True)
    loss, metrics = token_policy_loss(
        scores.log_probs,
        advantages[index],
        mask,
        cfg.reduction,
        old_log_probs=rollout.log_probs[index],
        clip_coef=clip_coef,
        clip_high=clip_high,
        importance_sampling_level=cfg.importance_sampling_level,
        cispo=cfg.loss_type == "cispo",
        sapo_temperatures=(cfg.sapo_temperature_pos, cfg.sapo_temperature_neg) if cfg.loss_type == "sapo" else None,
        step_tokens=step_tokens,
    )
    if cfg.kl_in == "loss" and cfg.kl_coef > 0:
        kl_term, kl_metrics = kl_loss(
            scores.log_probs, rollout.ref_log_probs[index], mask, cfg.kl_estimator, cfg.reduction, step_tokens
        )
        loss = loss + cfg.kl_coef * kl_term
        metrics.update(kl_metrics)
    if returns is not None and scores.values is not None:
        v_loss, v_metrics = value_loss(scores.values, returns[index], mask, rollout.values[index], value_clip)
        loss = loss + vf_coef * v_loss
        metrics.update(v_metrics)
    entropy, entropy_metrics = entropy_bonus(scores.entropy, mask)
    if cfg.ent_coef > 0:
        loss = loss - cfg.ent_coef * entropy
    metrics.update(entropy_metrics)
    if clip_coef is None:
        with torch.no_grad():
            log_ratio = scores.log_probs - rollout.log_probs[index]
            metrics["approx_kl"] = masked_mean(log_ratio.exp() - 1 - log_ratio, mask).item()
            metrics["clip_fraction"] = 0.0
    return loss, metrics


def loss_mask(rollout: TokenRollout, cfg: Any) -> torch.Tensor:
    """The tokens the loss sees, (N, T): the rollout's mask, less truncated responses when asked (DAPO)."""
    if not cfg.mask_truncated_completions:
        return rollout.mask
    return rollout.mask & ended_with_eos(rollout.actions, rollout.mask).unsqueeze(1)


def optimise(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: TokenRollout,
    advantages: torch.Tensor,
    cfg: Any,
    update_index: int,
    *,
    clip_coef: float | None = None,
    clip_high: float | None = None,
    epochs: int = 1,
    minibatches: int = 1,
    returns: torch.Tensor | None = None,
    vf_coef: float = 0.0,
    value_clip: float | None = None,
) -> dict[str, float]:
    """``epochs`` passes of ``minibatches`` gradient steps of :func:`minibatch_loss` over ``rollout``.

    Minibatches split whole responses; their order is keyed by (seed, update).
    """
    n = rollout.num_envs
    step_tokens = loss_mask(rollout, cfg).sum().item() / minibatches  # DAPO's batch-wide token count
    generator = torch.Generator().manual_seed(stream_seed(cfg.seed, Stream.LM_MINIBATCH_ORDER, update_index))
    sums: dict[str, float] = {}
    steps = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator) if minibatches > 1 else torch.arange(n)
        for index in order.chunk(minibatches):
            loss, metrics = minibatch_loss(
                model,
                rollout,
                index,
                advantages,
                cfg,
                clip_coef=clip_coef,
                clip_high=clip_high,
                returns=returns,
                vf_coef=vf_coef,
                value_clip=value_clip,
                step_tokens=step_tokens,
            )
            metrics["grad_norm"] = gradient_step(model, optimizer, loss, cfg.max_grad_norm)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            steps += 1
    out = {key: value / max(steps, 1) for key, value in sums.items()}
    if returns is not None:
        out["explained_variance"] = explained_variance(rollout.values, returns, rollout.mask)
    return out
