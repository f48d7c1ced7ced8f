"""Action heads: the policy network's outputs → a distribution over one action space.

==============  ============  ==================================================  ==============
action space    kind          distribution of the outputs                         noise per step
==============  ============  ==================================================  ==============
Discrete(n)     discrete      Categorical(logits (B, n))                          1 uniform
MultiDiscrete   multi_discrete  one Categorical per component, log-probs summed   K uniforms
MultiBinary(n)  multi_binary  n independent Bernoulli(logits), log-probs summed   n uniforms
Box (1-D)       box           diagonal Gaussian(mean (B, A), state-independent σ)  A normals
==============  ============  ==================================================  ==============

Every head draws from pre-drawn noise (inverse-CDF sampling for categoricals, ``u < p`` for
Bernoulli, ``μ + σ·z`` for Gaussians), so that the rollout's actions depend only on the noise
stream keyed by (seed, update, env index) — sharded or not, resumed or not.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Bernoulli, Categorical, Independent, Normal

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
#: The logit of an action the mask forbids: its probability is exactly 0 in float32, its log finite
#: (so entropies stay finite), as sb3-contrib's MaskablePPO does.
MASKED_LOGIT = -1e8
KINDS = ("discrete", "multi_discrete", "multi_binary", "box")


class MultiCategorical:
    """Independent categoricals over the components of a MultiDiscrete action (B, K); log-probs summed."""

    def __init__(self, logits: torch.Tensor, nvec: tuple[int, ...]) -> None:
        self.parts = [Categorical(logits=part, validate_args=False) for part in logits.split(list(nvec), dim=-1)]

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.stack([d.log_prob(actions[..., k]) for k, d in enumerate(self.parts)], -1).sum(-1)

    def entropy(self) -> torch.Tensor:
        return torch.stack([d.entropy() for d in self.parts], -1).sum(-1)

    def sample(self) -> torch.Tensor:
        return torch.stack([d.sample() for d in self.parts], -1)

    @property
    def mode(self) -> torch.Tensor:
        return torch.stack([d.logits.argmax(-1) for d in self.parts], -1)


class MultiBernoulli:
    """Independent Bernoullis over the bits of a MultiBinary action (B, n) of 0/1 integers; log-probs summed."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        self.bits = Independent(Bernoulli(logits=logits, validate_args=False), 1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.bits.log_prob(actions.to(self.logits.dtype))

    def entropy(self) -> torch.Tensor:
        return self.bits.entropy()

    def sample(self) -> torch.Tensor:
        return self.bits.sample().to(torch.int64)

    @property
    def mode(self) -> torch.Tensor:
        return (self.logits >= 0).to(torch.int64)


def distribution(kind: str, out: torch.Tensor, log_std: torch.Tensor | None, nvec: tuple[int, ...] | None) -> object:
    """π(·|s) from the network's outputs ``out`` (B, width) for this kind of head."""
    if kind == "discrete":
        return Categorical(logits=out, validate_args=False)
    if kind == "multi_discrete":
        assert nvec is not None
        return MultiCategorical(out, nvec)
    if kind == "multi_binary":
        return MultiBernoulli(out)
    assert log_std is not None
    return Independent(Normal(out, log_std.exp().expand_as(out), validate_args=False), 1)


def masked(out: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The logits with forbidden actions at :data:`MASKED_LOGIT`; ``mask`` (B, width) bool, True = allowed.

    For MultiDiscrete the mask is the components' masks side by side (B, sum(nvec)). An empty
    mask (width 0) or None leaves the logits alone.
    """
    if mask is None or mask.shape[-1] == 0:
        return out
    return out.masked_fill(~mask, MASKED_LOGIT)


def noise_shape(kind: str, action_dim: int, nvec: tuple[int, ...] | None) -> tuple[tuple[int, ...], bool]:
    """The noise one action draws: its shape per sample, and whether it is standard normal (else uniform)."""
    if kind == "discrete":
        return (), False
    if kind == "multi_discrete":
        assert nvec is not None
        return (len(nvec),), False
    return (action_dim,), kind == "box"


def inverse_cdf(
    logits: torch.Tensor, uniforms: torch.Tensor, allowed: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Categorical actions (B,) from uniforms (B,): the number of cdf entries ≤ u; and their log-probs.

    With ``allowed`` (B, n) bool, a u above the cdf's rounded top picks the last allowed action,
    not the last one: a forbidden action is never drawn.
    """
    log_probs_all = torch.log_softmax(logits, dim=-1)
    cdf = log_probs_all.exp().cumsum(-1)
    actions = (cdf <= uniforms.unsqueeze(-1)).sum(-1).clamp_(max=logits.shape[-1] - 1)
    if allowed is not None:
        last_allowed = (allowed * torch.arange(1, logits.shape[-1] + 1)).argmax(-1)
        actions = torch.where(allowed.gather(-1, actions.unsqueeze(-1)).squeeze(-1), actions, last_allowed)
    return actions, log_probs_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def sample(
    kind: str,
    out: torch.Tensor,
    noise: torch.Tensor,
    log_std: torch.Tensor | None,
    nvec: tuple[int, ...] | None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Actions and their log-probs from pre-drawn ``noise`` (see :func:`noise_shape`): the law of ``distribution``.

    ``out`` are the logits already :func:`masked`; ``mask`` (or None) keeps rounding from drawing a forbidden action.
    """
    allowed = mask if mask is not None and mask.shape[-1] else None
    if kind == "discrete":
        return inverse_cdf(out, noise, allowed)
    if kind == "multi_discrete":
        assert nvec is not None
        sizes = list(nvec)
        parts = out.split(sizes, dim=-1)
        masks = allowed.split(sizes, dim=-1) if allowed is not None else [None] * len(sizes)
        drawn = [inverse_cdf(part, noise[:, k], masks[k]) for k, part in enumerate(parts)]
        return torch.stack([a for a, _ in drawn], -1), torch.stack([lp for _, lp in drawn], -1).sum(-1)
    if kind == "multi_binary":
        actions = (noise < torch.sigmoid(out)).to(torch.int64)
        log_sigmoid = torch.nn.functional.logsigmoid
        log_probs = torch.where(actions.bool(), log_sigmoid(out), log_sigmoid(-out))
        return actions, log_probs.sum(-1)
    assert log_std is not None
    actions = out + log_std.exp() * noise
    return actions, (-0.5 * noise.pow(2) - log_std - LOG_SQRT_2PI).sum(-1)


def mode(kind: str, out: torch.Tensor, nvec: tuple[int, ...] | None) -> torch.Tensor:
    """The most likely action: argmax per categorical, p ≥ ½ per Bernoulli, the mean of a Gaussian."""
    if kind == "discrete":
        return out.argmax(-1)
    if kind == "multi_discrete":
        assert nvec is not None
        return torch.stack([part.argmax(-1) for part in out.split(list(nvec), dim=-1)], -1)
    if kind == "multi_binary":
        return (out >= 0).to(torch.int64)
    return out


__all__ = ["KINDS", "MultiBernoulli", "MultiCategorical", "distribution", "inverse_cdf", "mode", "noise_shape"]
