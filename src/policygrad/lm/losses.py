r"""Token-level loss reductions and KL estimators, composed from :mod:`policygrad.losses`.

A response is a row of an (N, T) rollout with a ``mask``; the shared losses average
over every valid token (``masked_mean``). Language-model training also needs the
other aggregations, and each weighs sequences differently:

=================  ====================================================  ==============================
reduction          loss                                                  weighs more
=================  ====================================================  ==============================
``token-mean``     Σ_i Σ_t ℓ_it / Σ_i |y_i|                              long responses (each token
                                                                         counts once)
``sequence-mean``  (1/N) Σ_i (1/|y_i|) Σ_t ℓ_it                          short responses (a sequence's
                                                                         tokens share one unit)
``sequence-sum``   (1/N) Σ_i Σ_t ℓ_it / T                                nothing: the sum over tokens
                                                                         is the score-function
                                                                         estimator, unbiased
=================  ====================================================  ==============================

``batch-token-mean``  Σ_i Σ_t ℓ_it / (tokens of the whole batch / minibatches): DAPO's token-level
aggregation (Yu et al. 2025), ``token-mean`` whose denominator does not depend on the
minibatch; equal to ``token-mean`` with one minibatch. ``sequence-total`` (1/N) Σ_i Σ_t ℓ_it:
LUSPO's sum over each response's tokens (Σ_t, not a mean).

T is the generation budget, a constant (so ``sequence-sum`` keeps ``token-mean``'s
scale; Liu et al. 2025, "Dr. GRPO"). ``token-mean`` divides by a random total, and
``sequence-mean`` by each response's own length, so with responses of different
lengths both are biased gradients of E[R]; with equal lengths all three agree up to a
constant. :mod:`policygrad.lm.exact` measures this on an enumerable LM bandit.

Each reduction is implemented as per-token weights w (N, T) with
``masked_mean(ℓ · w, mask)`` equal to the reduction: multiplying the advantages by w
(w > 0 commutes with PPO's min/clip) lets the shared losses do the work.
"""

from __future__ import annotations

import torch

from policygrad.losses import clipped_surrogate_loss, masked_mean, policy_gradient_loss

REDUCTIONS = ("token-mean", "sequence-mean", "sequence-sum", "batch-token-mean", "sequence-total")
KL_ESTIMATORS = ("k1", "k3")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def check_choice(name: str, choices: tuple[str, ...], what: str) -> None:
    """Raise ValueError unless ``name`` is one of ``choices`` (``what``: "loss reduction", "KL estimator")."""
    if name not in choices:
        raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(choices)}")


def reduction_weights(
    mask: torch.Tensor, reduction: str, step_tokens: float | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Weights w (N, T) such that ``masked_mean(x * w, mask)`` is ``reduction`` of x (see module doc).

    ``step_tokens`` is ``batch-token-mean``'s denominator (the batch's valid tokens over the
    number of minibatches); without it, this minibatch's own count (``token-mean``).
    """
    check_choice(reduction, REDUCTIONS, "loss reduction")
    maskf = mask.to(dtype)
    total = maskf.sum().clamp(min=1.0)
    n, budget = mask.shape
    if reduction == "token-mean":
        return maskf
    if reduction == "batch-token-mean":
        return maskf * (total / max(step_tokens, 1.0)) if step_tokens is not None else maskf
    if reduction == "sequence-total":
        return maskf * (total / n)
    if reduction == "sequence-mean":
        return maskf * (total / n) / maskf.sum(1, keepdim=True).clamp(min=1.0)
    return maskf * (total / (n * budget))  # sequence-sum


def loss_type_reduction(loss_type: str) -> str:
    r"""The reduction that TRL's ``loss_type`` aggregates token losses with (GRPOTrainer, TRL 1.16).

    ===========  ==================  ==========================================================
    loss_type    reduction           paper
    ===========  ==================  ==========================================================
    ``grpo``     ``sequence-mean``   Shao et al. 2024 (DeepSeekMath), eq. 3: (1/G) Σ_i (1/|o_i|) Σ_t
    ``bnpo``     ``token-mean``      Xiao et al. 2025 (BNPO): Σ_i Σ_t ℓ / Σ_i |o_i| per minibatch
    ``dr_grpo``  ``sequence-sum``    Liu et al. 2025 (Dr. GRPO): Σ_i Σ_t ℓ / (G · T_max)
    ``dapo``     ``batch-token-mean``  Yu et al. 2025 (DAPO), eq. 8: Σ_i Σ_t ℓ / Σ_i |o_i| of the batch
    ``cispo``    ``batch-token-mean``  MiniMax 2025 (MiniMax-M1), with :func:`cispo_loss`
    ``sapo``     ``sequence-mean``   Soft Adaptive Policy Optimization 2025, with :func:`sapo_loss`
    ``luspo``    ``sequence-total``  LUSPO 2026 (arXiv 2602.05261): (1/G) Σ_i Σ_t, GSPO's ratio
    ===========  ==================  ==========================================================
    """
    check_choice(loss_type, LOSS_TYPES, "loss_type")
    return _LOSS_TYPE_REDUCTIONS[loss_type]


_LOSS_TYPE_REDUCTIONS = {
    "grpo": "sequence-mean",
    "bnpo": "token-mean",
    "dr_grpo": "sequence-sum",
    "dapo": "batch-token-mean",
    "cispo": "batch-token-mean",
    "sapo": "sequence-mean",
    "luspo": "sequence-total",
}


def importance_log_ratio(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, mask: torch.Tensor, level: str = "token"
) -> torch.Tensor:
    r"""log ρ, (N, T): per token, or GSPO's sequence ratio broadcast over the response's tokens.

    ``token``: log ρ_t = log π(y_t|·) − log π_old(y_t|·). ``sequence`` (GSPO, Zheng et al.
    2025, eq. 7): log s_i = (1/|y_i|) Σ_t log ρ_t, one length-normalised ratio per response.
    """
    check_choice(level, IMPORTANCE_SAMPLING_LEVELS, "importance_sampling_level")
    log_ratio = log_probs - old_log_probs
    if level == "token":
        return log_ratio
    maskf = mask.to(log_ratio.dtype)
    per_sequence = (log_ratio * maskf).sum(1, keepdim=True) / maskf.sum(1, keepdim=True).clamp(min=1.0)
    return per_sequence.expand_as(log_ratio)


def _ratio_metrics(log_ratio: torch.Tensor, clipped: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        ratio = log_ratio.exp()
        return {
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask).item(),
            "clip_fraction": masked_mean(clipped.to(ratio.dtype), mask).item(),
        }


def clip_higher_surrogate_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float | None,
    clip_high: float | None,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""PPO's clipped surrogate with separate bounds: DAPO's clip-higher (Yu et al. 2025, eq. 10).

    −masked_mean(min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A)), ρ = e^{``log_ratio``} (token or
    GSPO sequence ratio, :func:`importance_log_ratio`). A bound of ``None`` is no bound.
    Shapes (N, T); ``advantages`` carry the reduction's weights.
    """
    ratio = log_ratio.exp()
    low = 1.0 - clip_low if clip_low is not None else 0.0
    high = 1.0 + clip_high if clip_high is not None else float("inf")
    advantages = advantages.detach()
    loss = -masked_mean(torch.minimum(ratio * advantages, ratio.clamp(low, high) * advantages), mask)
    return loss, {"policy_loss": loss.item(), **_ratio_metrics(log_ratio, (ratio < low) | (ratio > high), mask)}


def cispo_loss(
    log_probs: torch.Tensor,
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    clip_max: float | None,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""CISPO (MiniMax-M1, 2025, eq. 4): clip the importance weight, not the update.

    −masked_mean(sg(min(ρ, ε_max)) · A · log π(y_t|·)): every token keeps a gradient
    (PPO's clip zeroes it outside the trust region); only its weight is capped. TRL's
    ε_max is ``epsilon_high`` (ScaleRL recommends 5.0). Shapes (N, T).
    """
    ratio = log_ratio.exp()
    weight = (ratio.clamp(max=clip_max) if clip_max is not None else ratio).detach()
    loss = -masked_mean(weight * advantages.detach() * log_probs, mask)
    clipped = ratio > clip_max if clip_max is not None else torch.zeros_like(mask)
    return loss, {"policy_loss": loss.item(), **_ratio_metrics(log_ratio, clipped, mask)}


def sapo_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    temperatures: tuple[float, float],
    mask: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""SAPO (arXiv 2511.20347): a smooth gate in place of the hard clip.

    −masked_mean(σ(τ(ρ − 1)) · 4/τ · A), τ = τ_pos where A > 0 else τ_neg
    (``temperatures`` = (τ_pos, τ_neg); TRL's defaults 1.0 and 1.05). At ρ = 1 its gradient
    is A ∇log π, as PPO's. Shapes (N, T).
    """
    ratio = log_ratio.exp()
    advantages = advantages.detach()
    tau = torch.where(advantages > 0, *(torch.full_like(advantages, t) for t in temperatures))
    loss = -masked_mean(torch.sigmoid(tau * (ratio - 1.0)) * 4.0 / tau * advantages, mask)
    return loss, {"policy_loss": loss.item(), **_ratio_metrics(log_ratio, torch.zeros_like(mask), mask)}


def token_policy_loss(
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    reduction: str = "token-mean",
    old_log_probs: torch.Tensor | None = None,
    clip_coef: float | None = None,
    *,
    clip_high: float | None = None,
    importance_sampling_level: str = "token",
    cispo: bool = False,
    sapo_temperatures: tuple[float, float] | None = None,
    step_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""Policy-gradient loss over response tokens with a chosen reduction.

    Without ``clip_coef``: :func:`~policygrad.losses.policy_gradient_loss`,
    −reduce(log π(y_t|·) A_t). With it: PPO's
    :func:`~policygrad.losses.clipped_surrogate_loss`,
    −reduce(min(ρ_t A_t, clip(ρ_t, 1 ± ε) A_t)), ρ_t = π(y_t|·)/π_old(y_t|·).
    A separate upper bound ``clip_high`` or a ``sequence`` importance ratio takes
    :func:`clip_higher_surrogate_loss`; ``cispo`` takes :func:`cispo_loss` (ε_max = ``clip_high``),
    ``sapo_temperatures`` :func:`sapo_loss`.

    ==============  ======  =====================================================
    argument        shape   meaning
    ==============  ======  =====================================================
    log_probs       (N, T)  log π_θ(y_t | prompt, y_<t), differentiable
    advantages      (N, T)  A_t (treated as constants)
    mask            (N, T)  valid response tokens
    old_log_probs   (N, T)  log π at sampling time (needed with a ratio)
    ==============  ======  =====================================================
    """
    weighted = advantages.detach() * reduction_weights(mask, reduction, step_tokens, log_probs.dtype)
    variant = cispo or sapo_temperatures is not None or importance_sampling_level != "token"
    variant = variant or clip_high not in (None, clip_coef)
    if old_log_probs is None and (variant or clip_coef is not None):
        raise ValueError("token_policy_loss: an importance ratio needs old_log_probs")
    if variant:
        log_ratio = importance_log_ratio(log_probs, old_log_probs, mask, importance_sampling_level)
        if cispo:
            return cispo_loss(log_probs, log_ratio, weighted, clip_high, mask)
        if sapo_temperatures is not None:
            return sapo_loss(log_ratio, weighted, sapo_temperatures, mask)
        return clip_higher_surrogate_loss(log_ratio, weighted, clip_coef, clip_high, mask)
    if clip_coef is None:
        return policy_gradient_loss(log_probs, weighted, mask)
    return clipped_surrogate_loss(log_probs, old_log_probs, weighted, clip_coef, mask)


def kl_per_token(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, estimator: str) -> torch.Tensor:
    r"""Per-token estimate of KL(π‖π_ref) from tokens sampled from π, (N, T).

    With log-ratio :math:`\ell = \log\pi_{ref}(y_t|\cdot) - \log\pi(y_t|\cdot)` (Schulman 2020):

    - ``k1`` = −ℓ: unbiased, high variance, can be negative for one sample;
    - ``k3`` = (e^ℓ − 1) − ℓ: unbiased for the KL of the token's own distribution, ≥ 0,
      lower variance. As a *loss* its gradient is ∇KL(π_ref‖π), not ∇KL(π‖π_ref)
      (biased for the reverse-KL objective; measured in :mod:`policygrad.lm.exact`).
    """
    check_choice(estimator, KL_ESTIMATORS, "KL estimator")
    log_ratio = ref_log_probs - log_probs
    if estimator == "k1":
        return -log_ratio
    return torch.expm1(log_ratio) - log_ratio  # k3


def kl_loss(
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    mask: torch.Tensor,
    estimator: str = "k3",
    reduction: str = "token-mean",
    step_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The KL penalty placed in the loss (GRPO): reduce(k(y_t)) with ``estimator`` k1 or k3. Shapes (N, T).

    Positions outside ``mask`` count as ratio 1 before k3's exponential: there the
    rollout's reference log-prob is 0 and the policy's may be very negative (a Hugging
    Face policy's never-sampled ``<pad>``), and e^(huge) × 0 would be nan.
    """
    ref_log_probs = ref_log_probs.detach()
    per_token = kl_per_token(torch.where(mask, log_probs, ref_log_probs), ref_log_probs, estimator)
    loss = masked_mean(per_token * reduction_weights(mask, reduction, step_tokens, log_probs.dtype), mask)
    return loss, {"kl_loss": loss.item()}


@torch.no_grad()
def sequence_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """KL(π‖π_ref) of whole responses, Σ_t over each response then averaged: ``kl_k1`` and ``kl_k3``."""
    maskf = mask.to(log_probs.dtype)
    return {
        f"kl_{name}": (kl_per_token(log_probs, ref_log_probs, name) * maskf).sum(1).mean().item()
        for name in KL_ESTIMATORS
    }
