"""Sampling responses with a KV cache, and scoring them (log-probs, entropy, values).

Sampling draws each token by inverse CDF from pre-drawn uniforms: with p = softmax(z),
token = min{i : F_i > u·F_V}, F = cumsum(p). That is one ``cumsum`` and one
``searchsorted`` per step — cheap even for a 32,000-token vocabulary, where
``torch.multinomial`` is slow — and, because the uniforms are drawn up front from a
generator keyed by (seed, update), the same seed gives the same responses on any split
of the batch and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from policygrad.lm.head import head_weight, sample_from_hidden, token_log_probs
from policygrad.lm.tasks import EOS, PAD
from policygrad.lm.token_scores import token_scores, token_scores_reference

#: How ``score`` turns logits into log-probs and entropies: equal results, the fused one faster at large V.
SCORERS = {"fused": token_scores, "reference": token_scores_reference}


class PolicyModel(Protocol):
    """What the LM code needs from a model: ours (:class:`TransformerLM`) or a Hugging Face adapter."""

    def __call__(self, tokens: torch.Tensor, cache: object | None = None) -> object: ...

    def new_cache(self, batch: int, max_len: int) -> object: ...


@dataclass
class Samples:
    """Sampled responses.

    ==========  ============  ===============================================================
    field       shape         meaning
    ==========  ============  ===============================================================
    prompts     (N, P)        prompt token ids
    responses   (N, T)        response token ids, ``<pad>`` after the response ends
    log_probs   (N, T)        log π(y_t | prompt, y_<t) at sampling time (0 on padding)
    values      (N, T)|None   V(prompt, y_<t) from the value head, when the model has one
    mask        (N, T) bool   the token is part of the response (through ``<eos>``)
    ==========  ============  ===============================================================
    """

    prompts: torch.Tensor
    responses: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor | None
    mask: torch.Tensor

    @property
    def sequences(self) -> torch.Tensor:
        """Prompt followed by response, (N, P + T)."""
        return torch.cat([self.prompts, self.responses], dim=1)

    @property
    def lengths(self) -> torch.Tensor:
        """Response lengths, (N,)."""
        return self.mask.sum(1)


def inverse_cdf_sample(logits: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of ``logits`` (B, V) with ``uniforms`` (B,) in [0, 1).

    Returns ``(tokens, log_probs)``, both (B,). Exactly the categorical distribution
    softmax(logits): P(token = i) = F_i − F_{i−1}.
    """
    log_normalizer = torch.logsumexp(logits, dim=-1, keepdim=True)
    cdf = torch.exp(logits - log_normalizer).cumsum(dim=-1)
    # right=True: the first i with F_i > u·F_V, so zero-probability tokens are never drawn
    tokens = torch.searchsorted(cdf, uniforms.unsqueeze(-1) * cdf[:, -1:], right=True).clamp_(max=logits.shape[-1] - 1)
    log_probs = (logits.gather(-1, tokens) - log_normalizer).squeeze(-1)
    return tokens.squeeze(-1), log_probs


def sampling_uniforms(generator: torch.Generator, n: int, steps: int) -> torch.Tensor:
    """Uniforms (n, steps) for :func:`generate`, drawn in one call."""
    return torch.rand(n, steps, generator=generator)


@torch.no_grad()
def generate(
    model: PolicyModel,
    prompts: torch.Tensor,
    max_new_tokens: int,
    uniforms: torch.Tensor,
    stop_at_eos: bool = True,
    temperature: float = 1.0,
) -> Samples:
    """Sample responses to ``prompts`` (N, P): one batched forward per token over a KV cache.

    ``uniforms`` (N, max_new_tokens) drive :func:`inverse_cdf_sample`. A response ends
    after ``<eos>`` (when ``stop_at_eos``) or at ``max_new_tokens``; generation stops as
    soon as every response has ended. ``temperature`` 0 is greedy decoding. A model on
    the chunked head (:func:`~policygrad.lm.head.head_weight`) evaluates its head on the
    last position only, a block of rows at a time (:func:`~policygrad.lm.head.sample_from_hidden`).
    """
    n, prompt_length = prompts.shape
    cache = model.new_cache(n, prompt_length + max_new_tokens)
    responses = torch.full((n, max_new_tokens), PAD, dtype=torch.long)
    log_probs = torch.zeros(n, max_new_tokens)
    mask = torch.zeros(n, max_new_tokens, dtype=torch.bool)
    values: torch.Tensor | None = None
    finished = torch.zeros(n, dtype=torch.bool)
    weight = head_weight(model)

    def forward(tokens: torch.Tensor) -> Any:
        return model(tokens, cache) if weight is None else model(tokens, cache, with_logits=False)

    out = forward(prompts)
    steps = max_new_tokens
    for t in range(max_new_tokens):
        if out.values is not None:
            if values is None:
                values = torch.zeros(n, max_new_tokens)
            values[:, t] = torch.where(finished, 0.0, out.values[:, -1])
        if weight is not None:
            token, log_prob = sample_from_hidden(out.hidden[:, -1], weight, uniforms[:, t], temperature)
        elif temperature == 0.0:
            token = out.logits[:, -1].argmax(-1)
            log_prob = torch.log_softmax(out.logits[:, -1], -1).gather(-1, token[:, None]).squeeze(-1)
        else:
            logits = out.logits[:, -1]
            token, log_prob = inverse_cdf_sample(logits / temperature if temperature != 1.0 else logits, uniforms[:, t])
        live = ~finished
        responses[:, t] = torch.where(live, token, PAD)
        log_probs[:, t] = torch.where(live, log_prob, 0.0)
        mask[:, t] = live
        if stop_at_eos:
            finished = finished | (token == EOS)
        if t == max_new_tokens - 1 or bool(finished.all()):
            steps = t + 1
            break
        out = forward(token[:, None])
    if steps < max_new_tokens and values is not None:
        values[:, steps:] = 0.0
    return Samples(prompts, responses, log_probs, values, mask)


@dataclass
class Scores:
    """Per-token quantities of given responses under a model, each (N, T)."""

    log_probs: torch.Tensor
    entropy: torch.Tensor | None
    values: torch.Tensor | None


def score(
    model: PolicyModel,
    prompts: torch.Tensor,
    responses: torch.Tensor,
    with_entropy: bool = False,
    scorer: str = "fused",
) -> Scores:
    """Log π(y_t | prompt, y_<t) of ``responses`` (N, T) after ``prompts`` (N, P): one forward pass.

    Differentiable (wrap in ``torch.no_grad()`` for the reference). The entropy is the
    full-distribution entropy H(π(· | prompt, y_<t)) at each response position.
    A model on the chunked head (:func:`~policygrad.lm.head.head_weight`) evaluates it on
    the response positions only, a block of rows at a time
    (:func:`~policygrad.lm.head.token_log_probs`); otherwise ``scorer`` turns the logits
    into log-probs: ``fused`` (the gradient written out,
    :func:`~policygrad.lm.token_scores.token_scores`) or ``reference`` (autograd through
    log_softmax). All give the same numbers.
    """
    prompt_length = prompts.shape[1]
    sequences = torch.cat([prompts, responses], dim=1)[:, :-1]
    weight = head_weight(model)
    if weight is not None:
        out = model(sequences, with_logits=False)
        hidden = out.hidden[:, prompt_length - 1 :]
        flat_log_probs, flat_entropy = token_log_probs(
            hidden.reshape(-1, hidden.shape[-1]), weight, responses.reshape(-1), with_entropy
        )
        log_probs = flat_log_probs.view(responses.shape)
        entropy = flat_entropy.view(responses.shape) if flat_entropy is not None else None
    else:
        out = model(sequences)
        logits = out.logits[:, prompt_length - 1 :]
        log_probs, entropy = SCORERS[scorer](logits, responses, with_entropy)
    values = out.values[:, prompt_length - 1 :] if out.values is not None else None
    return Scores(log_probs, entropy, values)
