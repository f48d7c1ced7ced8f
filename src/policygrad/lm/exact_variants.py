r"""The exact expected update of each GRPO-family loss variant on the LM bandit, by enumerating whole groups.

At the first gradient step of an update (ρ = 1) every variant's −∇loss on one group of K
responses y_1 … y_K is a weighted sum of token scores,

.. math::

    \hat g = \sum_k \sum_t \bigl(w_k A_k + w_k\,\kappa(y_k, t)\bigr)\,\nabla\log\pi(y_{k,t}\mid y_{k,<t})

with the aggregation weight w_k (``sequence-mean`` 1/(K|y_k|), ``token-mean`` 1/Σ_j|y_j|,
``sequence-sum`` 1/(K T)), the advantage A_k of the group's returns (group mean, optionally
divided by the group std; or RLOO's leave-one-out baseline), and the KL's per-token part κ
(−β(1 − π_ref/π) for k3 in the loss; β Σ_{t'<t} k1 for RLOO's per-token returns with k1 in
the reward). Its expectation over the K i.i.d. responses is then

.. math::

    \mathbb E[\hat g] = \sum_y \sum_t C(y, t)\,\nabla\log\pi(y_t \mid y_{<t}),\qquad
    C(y, t) = \sum_{(y_1..y_K)} \prod_k \pi(y_k)\sum_{k: y_k = y} w_k (A_k + \kappa(y, t)),

a finite sum over all M^K groups (M enumerated responses), done here in chunks, and one
autograd call. At ρ = 1 CISPO's weight min(ρ, ε_max) is 1 (ε_max ≥ 1) and GSPO's sequence
ratio has the gradient of GRPO's token ratios, so ``cispo`` = ``dapo`` and GSPO = ``grpo``
here: they differ only off-policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from policygrad.lm.exact import LMBandit, flat_gradient
from policygrad.lm.generation import score
from policygrad.lm.tasks import BOS


@dataclass(frozen=True)
class Variant:
    """One estimator of the family: how it baselines, scales, weighs tokens and places the KL.

    ``settings`` run the same estimator through the library's code path (algorithm and
    config overrides, for :func:`policygrad.lm.exact.estimator_gradients`); ``unbiased``
    is the factor c with E[ĝ] = c·∇J_β/T where theory says the estimator is unbiased up to
    scale (None where it is not).
    """

    name: str
    baseline: str  # "group-mean" or "leave-one-out"
    scale_rewards: str  # "group" or "none"
    reduction: str  # "sequence-mean", "token-mean" or "sequence-sum"
    kl_in: str  # "loss" (k3, TRL) or "reward" (k1)
    algo: str
    settings: dict[str, Any]
    unbiased: str | None = None  # "1" or "(K-1)/K"


def _grpo(name: str, loss_type: str, scale: str, reduction: str, kl_in: str = "loss", **extra: Any) -> Variant:
    settings = {"loss_type": loss_type, "scale_rewards": scale, "kl_in": kl_in, "kl_estimator": "k3", **extra}
    unbiased = "(K-1)/K" if (scale, reduction, kl_in) == ("none", "sequence-sum", "reward") else None
    return Variant(name, "group-mean", scale, reduction, kl_in, "grpo", settings, unbiased)


#: The variants measured, TRL's names first; ``unbiased`` says what theory promises.
VARIANTS: list[Variant] = [
    Variant(
        "rloo (k1 in reward, sequence-sum)",
        "leave-one-out",
        "none",
        "sequence-sum",
        "reward",
        "rloo",
        {"loss_reduction": "sequence-sum"},
        "1",
    ),
    _grpo("grpo", "grpo", "group", "sequence-mean"),
    _grpo("grpo, scale_rewards=none", "grpo", "none", "sequence-mean"),
    _grpo("bnpo", "bnpo", "group", "token-mean"),
    _grpo("dapo (= cispo at ρ = 1)", "dapo", "group", "token-mean"),
    _grpo("dapo, scale_rewards=none", "dapo", "none", "token-mean"),
    _grpo("dr_grpo (scale_rewards=none)", "dr_grpo", "none", "sequence-sum"),
    _grpo("dr_grpo, k1 in reward", "dr_grpo", "none", "sequence-sum", kl_in="reward"),
]


def _weights(lengths: torch.Tensor, reduction: str, budget: int) -> torch.Tensor:
    """w_k for groups of response ``lengths`` (B, K)."""
    k = lengths.shape[1]
    if reduction == "sequence-mean":
        return 1.0 / (k * lengths)
    if reduction == "token-mean":
        return 1.0 / lengths.sum(1, keepdim=True).expand_as(lengths)
    return torch.full_like(lengths, 1.0 / (k * budget))


def _advantages(returns: torch.Tensor, variant: Variant, eps: float) -> torch.Tensor:
    """A_k for groups of ``returns`` (B, K)."""
    k = returns.shape[1]
    if variant.baseline == "leave-one-out":
        return returns - (returns.sum(1, keepdim=True) - returns) / (k - 1)
    centred = returns - returns.mean(1, keepdim=True)
    if variant.scale_rewards == "none":
        return centred
    return centred / (centred.pow(2).sum(1, keepdim=True) / (k - 1)).sqrt().add(eps)  # Bessel, as TRL


def expected_coefficients(
    variant: Variant,
    model: torch.nn.Module,
    reference: torch.nn.Module,
    bandit: LMBandit,
    kl_coef: float,
    group_size: int = 4,
    std_eps: float = 1e-4,
) -> torch.Tensor:
    """C(y, t), (M, L) float64: E[ĝ] = Σ_y Σ_t C(y, t) ∇log π(y_t | y_<t) (module doc), by enumerating every group."""
    prompts = torch.full((bandit.responses.shape[0], 1), BOS)
    mask = bandit.mask.to(torch.float64)
    with torch.no_grad():
        log_p = score(model, prompts, bandit.responses).log_probs.double() * mask
        log_ref = score(reference, prompts, bandit.responses).log_probs.double() * mask
        probs = log_p.sum(1).exp()
        k1 = log_p - log_ref  # per token
        returns = bandit.rewards.double()
        if variant.kl_in == "reward":
            returns = returns - kl_coef * k1.sum(1)
        lengths = mask.sum(1)
        m = len(probs)
        policy_part = torch.zeros(m, dtype=torch.float64)
        weight_part = torch.zeros(m, dtype=torch.float64)
        rest = torch.cartesian_prod(*[torch.arange(m)] * (group_size - 1)).reshape(-1, group_size - 1)
        for first in range(m):  # chunks of M^(K−1) groups: all groups whose first response is `first`
            groups = torch.cat([torch.full((len(rest), 1), first), rest], dim=1)
            weight = probs[groups].prod(1, keepdim=True) * _weights(lengths[groups], variant.reduction, mask.shape[1])
            advantage = _advantages(returns[groups], variant, std_eps)
            policy_part.index_add_(0, groups.flatten(), (weight * advantage).flatten())
            weight_part.index_add_(0, groups.flatten(), weight.flatten())
        if variant.kl_in == "loss":  # −β ∂k3/∂log π = −β(1 − π_ref/π)
            per_token = -kl_coef * (1.0 - (log_ref - log_p).exp())
        elif variant.baseline == "leave-one-out":  # per-token returns: G_t − G_0 = β Σ_{t'<t} k1
            per_token = kl_coef * (k1.cumsum(1) - k1)
        else:
            per_token = torch.zeros_like(k1)
        return (policy_part.unsqueeze(1) + weight_part.unsqueeze(1) * per_token) * mask


def expected_update(
    variant: Variant,
    model: torch.nn.Module,
    reference: torch.nn.Module,
    bandit: LMBandit,
    kl_coef: float,
    group_size: int = 4,
    std_eps: float = 1e-4,
) -> torch.Tensor:
    """E[ĝ] of ``variant`` on one group of ``group_size`` responses, exactly, flattened like ∇J."""
    coefficients = expected_coefficients(variant, model, reference, bandit, kl_coef, group_size, std_eps)
    return update_of(coefficients, model, bandit)


def update_of(coefficients: torch.Tensor, model: torch.nn.Module, bandit: LMBandit) -> torch.Tensor:
    """Σ_y Σ_t C(y, t) ∇log π(y_t | y_<t) for ``coefficients`` C (M, L), flattened."""
    prompts = torch.full((bandit.responses.shape[0], 1), BOS)
    token_log_probs = score(model, prompts, bandit.responses).log_probs
    return flat_gradient((coefficients.float() * token_log_probs).sum(), model)


def length_penalty(coefficients: torch.Tensor, unbiased: torch.Tensor, bandit: LMBandit) -> dict[int, float]:
    """How hard a variant pushes down wrong answers of each length, relative to an unbiased estimator.

    For β = 0 a response's coefficient C(y) is its expected push (positive: up, negative:
    down); the wrong answers are those the unbiased estimator pushes down (r(y) < E_π[r]).
    Per length ℓ: Σ C_variant(y) / Σ C_unbiased(y) over the wrong answers of that length.
    Equal values across lengths: no length bias; GRPO's 1/|o| gives T(K−1)/(Kℓ), so a long
    wrong answer is penalised less than a short one (Liu et al. 2025, §3.1).
    """
    lengths = bandit.mask.sum(1)
    wrong = unbiased[:, 0] < 0
    out = {}
    for length in sorted(set(lengths.tolist())):
        rows = wrong & (lengths == length)
        if rows.any():  # lengths with no wrong answer are left out
            out[int(length)] = (coefficients[rows, 0].sum() / unbiased[rows, 0].sum()).item()
    return out
