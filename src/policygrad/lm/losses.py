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

REDUCTIONS = ("token-mean", "sequence-mean", "sequence-sum")
KL_ESTIMATORS = ("k1", "k3")


def check_choice(name: str, choices: tuple[str, ...], what: str) -> None:
    """Raise ValueError unless ``name`` is one of ``choices`` (``what``: "loss reduction", "KL estimator")."""
    if name not in choices:
        raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(choices)}")


def reduction_weights(mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Weights w (N, T) such that ``masked_mean(x * w, mask)`` is ``reduction`` of x (see module doc)."""
    check_choice(reduction, REDUCTIONS, "loss reduction")
    maskf = mask.to(torch.float32)
    total = maskf.sum().clamp(min=1.0)
    n, budget = mask.shape
    if reduction == "token-mean":
        return maskf
    if reduction == "sequence-mean":
        return maskf * (total / n) / maskf.sum(1, keepdim=True).clamp(min=1.0)
    return maskf * (total / (n * budget))  # sequence-sum


def token_policy_loss(
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    reduction: str = "token-mean",
    old_log_probs: torch.Tensor | None = None,
    clip_coef: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""Policy-gradient loss over response tokens with a chosen reduction.

    Without ``clip_coef``: :func:`~policygrad.losses.policy_gradient_loss`,
    −reduce(log π(y_t|·) A_t). With it: PPO's
    :func:`~policygrad.losses.clipped_surrogate_loss`,
    −reduce(min(ρ_t A_t, clip(ρ_t, 1 ± ε) A_t)), ρ_t = π(y_t|·)/π_old(y_t|·).

    ==============  ======  =====================================================
    argument        shape   meaning
    ==============  ======  =====================================================
    log_probs       (N, T)  log π_θ(y_t | prompt, y_<t), differentiable
    advantages      (N, T)  A_t (treated as constants)
    mask            (N, T)  valid response tokens
    old_log_probs   (N, T)  log π at sampling time (needed with ``clip_coef``)
    ==============  ======  =====================================================
    """
    weighted = advantages.detach() * reduction_weights(mask, reduction)
    if clip_coef is None:
        return policy_gradient_loss(log_probs, weighted, mask)
    if old_log_probs is None:
        raise ValueError("token_policy_loss: clip_coef needs old_log_probs")
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
) -> tuple[torch.Tensor, dict[str, float]]:
    """The KL penalty placed in the loss (GRPO): reduce(k(y_t)) with ``estimator`` k1 or k3. Shapes (N, T)."""
    per_token = kl_per_token(log_probs, ref_log_probs.detach(), estimator)
    loss = masked_mean(per_token * reduction_weights(mask, reduction), mask)
    return loss, {"kl_loss": loss.item()}


@torch.no_grad()
def sequence_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """KL(π‖π_ref) of whole responses, Σ_t over each response then averaged: ``kl_k1`` and ``kl_k3``."""
    maskf = mask.to(log_probs.dtype)
    return {
        f"kl_{name}": (kl_per_token(log_probs, ref_log_probs, name) * maskf).sum(1).mean().item()
        for name in KL_ESTIMATORS
    }
