"""Losses shared by every algorithm. Each returns ``(loss, metrics)``; metrics are floats.

All take a ``mask`` (N, T) or flat (B,) of valid steps: padding never counts.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is true."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def normalize(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Standardise ``x`` to zero mean and unit variance over the valid entries."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) / (var.sqrt() + eps)


def normalize_rows(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """:func:`normalize` applied to each row of ``x`` (R, B) over its valid entries, all rows at once."""
    weight = mask.to(x.dtype)
    count = weight.sum(1, keepdim=True).clamp(min=1.0)
    mean = (x * weight).sum(1, keepdim=True) / count
    var = ((x - mean) ** 2 * weight).sum(1, keepdim=True) / count
    return (x - mean) / (var.sqrt() + eps)


def policy_gradient_loss(
    log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""The score-function (REINFORCE) loss: :math:`-\mathbb{E}[\log \pi(a_t|s_t)\, A_t]`.

    Its gradient is the policy-gradient theorem's estimate
    :math:`\nabla J \approx \mathbb{E}[\nabla \log \pi(a_t|s_t)\, A_t]` (Williams 1992).
    ``advantages`` are treated as constants.
    """
    loss = -masked_mean(log_probs * advantages.detach(), mask)
    return loss, {"policy_loss": loss.item()}


def clipped_surrogate_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip_coef: float,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""PPO's clipped objective (Schulman et al. 2017, eq. 7).

    .. math::

        L = -\mathbb{E}\left[\min\left(\rho_t A_t,\
            \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon) A_t\right)\right],
        \quad \rho_t = \frac{\pi_\theta(a_t|s_t)}{\pi_{\text{old}}(a_t|s_t)}

    At ρ = 1 its gradient equals :func:`policy_gradient_loss`'s. Metrics: ``approx_kl``
    (the k3 estimator E[(ρ − 1) − log ρ], Schulman 2020) and ``clip_fraction``.
    """
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    advantages = advantages.detach()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages
    loss = -masked_mean(torch.minimum(unclipped, clipped), mask)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask).item()
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip_coef).to(ratio.dtype), mask).item()
    return loss, {"policy_loss": loss.item(), "approx_kl": approx_kl, "clip_fraction": clip_fraction}


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_coef: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""Critic regression :math:`\tfrac12\mathbb{E}[(V(s_t) - \hat R_t)^2]`.

    With ``old_values`` and ``clip_coef``, PPO's clipped value loss: the larger of the
    plain and the clipped error, where the clipped prediction stays within ±clip of the
    value at collection time.
    """
    returns = returns.detach()
    error = (values - returns) ** 2
    if old_values is not None and clip_coef is not None:
        clipped_values = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
        error = torch.maximum(error, (clipped_values - returns) ** 2)
    loss = 0.5 * masked_mean(error, mask)
    return loss, {"value_loss": loss.item()}


def entropy_bonus(entropy: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean policy entropy (subtracted from the loss, times ``ent_coef``, to keep exploring)."""
    mean = masked_mean(entropy, mask)
    return mean, {"entropy": mean.item()}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 − Var[R − V] / Var[R] over valid steps: 1 is a perfect critic, ≤ 0 no better than a constant."""
    if values.device.type == "cpu":  # a logged float: numpy computes it at a fraction of torch's per-op cost
        valid = mask.numpy().astype(bool)
        returns_np, values_np = returns.detach().numpy()[valid], values.detach().numpy()[valid]
        var_returns_np = returns_np.var() if returns_np.size else 0.0
        if var_returns_np == 0.0:
            return float("nan")
        return float(1.0 - (returns_np - values_np).var() / var_returns_np)
    with torch.no_grad():
        var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
        residual = returns - values
        var_residual = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)
        if var_returns.item() == 0.0:
            return float("nan")
        return (1.0 - var_residual / var_returns).item()
