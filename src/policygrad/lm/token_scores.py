r"""Per-token log-probs and entropies from logits: the plain reference and a fused path for large vocabularies.

For logits z (N, T, V) and the chosen tokens y (N, T), with L = logsumexp(z) and
p = e^{z − L}:

.. math::

    \log\pi(y) = z_y - L,\qquad H = L - \sum_v p_v z_v,\qquad
    \frac{\partial}{\partial z} = g_{\log\pi}\,(e_y - p) - g_H\, p\,(z - L + H)

:func:`token_scores_reference` lets autograd differentiate ``log_softmax``, which keeps
several (N, T, V) tensors alive (the log-softmax, its exponential, their product, and
as many again in backward): at a 32,000-token vocabulary each is 640 × 32,000 floats
for RLOO's default batch. :func:`token_scores` computes the same numbers with the
gradient above written out: the forward keeps only the logits and two (N, T) tensors,
and the backward builds the (N, T, V) gradient in place from one recomputed softmax.
Without gradients (the reference's log-probs) it is one logsumexp and a gather. Tests
prove the two equal (``tests/test_lm_token_scores.py``); ``benchmarks/lm_vocab.py``
times both.
"""

from __future__ import annotations

from typing import Any

import torch


def token_scores_reference(
    logits: torch.Tensor, tokens: torch.Tensor, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(y_t) (N, T) of ``tokens`` and, with ``with_entropy``, H(π) (N, T), by autograd through log_softmax."""
    log_softmax = torch.log_softmax(logits.float(), dim=-1)
    log_probs = log_softmax.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_softmax.exp() * log_softmax).sum(-1) if with_entropy else None
    return log_probs, entropy


class _FusedTokenScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, tokens: torch.Tensor, with_entropy: bool) -> Any:
        lse = torch.logsumexp(logits, dim=-1)
        log_probs = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse
        entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(-1) if with_entropy else None
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(logits, tokens, lse, entropy if entropy is not None else lse)
        ctx.with_entropy = with_entropy
        return log_probs, entropy

    @staticmethod
    def backward(ctx: Any, grad_log_probs: torch.Tensor | None, grad_entropy: torch.Tensor | None) -> Any:
        logits, tokens, lse, entropy = ctx.saved_tensors
        grad = torch.sub(logits, lse.unsqueeze(-1))  # log p, then the gradient, in one buffer
        if ctx.with_entropy and grad_entropy is not None:
            p = grad.exp()
            # −g_H p (log p + H) − g_lp p
            grad.add_(entropy.unsqueeze(-1)).mul_(grad_entropy.unsqueeze(-1))
            if grad_log_probs is not None:
                grad.add_(grad_log_probs.unsqueeze(-1))
            grad.mul_(p).neg_()
        elif grad_log_probs is not None:
            grad.exp_().mul_(-grad_log_probs.unsqueeze(-1))
        else:
            return None, None, None
        if grad_log_probs is not None:
            grad.scatter_add_(-1, tokens.unsqueeze(-1), grad_log_probs.unsqueeze(-1))  # + g_lp e_y
        return grad, None, None


def token_scores(
    logits: torch.Tensor, tokens: torch.Tensor, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The same as :func:`token_scores_reference`, with the (N, T, V) work fused (module doc)."""
    logits = logits.float()
    if not torch.is_grad_enabled() or not logits.requires_grad:
        lse = torch.logsumexp(logits, dim=-1)
        log_probs = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse
        entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(-1) if with_entropy else None
        return log_probs, entropy
    return _FusedTokenScores.apply(logits, tokens, with_entropy)
