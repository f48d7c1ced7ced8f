r"""The language-model head over a large vocabulary, a block of rows at a time.

At V = 32,000 the head's logits are the largest tensors of an update: (N·T, V) floats,
80 MB for RLOO's 640 response tokens, and the plain path computes them for the prompt
positions too. It writes them, their log-softmax, the entropy's product and each of
their gradients in full: much of a 32K update goes to allocating (page-faulting) and
streaming those tensors. The chunked path evaluates the head on the positions that need
it only (the response tokens; the last position when sampling), a block of rows at a
time, reusing one block's buffers, so nothing (N·T, V) ever exists:

- forward (:class:`ChunkedLogProbs`): z = h Wᵀ for a block, log Z = logsumexp(z),
  log π(y) = z_y − log Z and, when asked, the entropy H = log Z − Σ_j p_j z_j;
- backward: the block's z is recomputed (one more matrix product instead of keeping
  80 MB of logits alive) and, with p = softmax(z) and upstream gradients g (of log π(y))
  and g_H (of H),

      ∂L/∂z = g (onehot(y) − p) − g_H · p ⊙ (log p + H),

  then ∂L/∂h = (∂L/∂z) W and ∂L/∂W += (∂L/∂z)ᵀ h, accumulated over the blocks;
- sampling (:func:`sample_from_hidden`): the same inverse CDF as
  :func:`~policygrad.lm.generation.inverse_cdf_sample`, one block of rows at a time.

The same idea as Liger-Kernel's fused linear cross-entropy, written for per-token
log-probs (the policy-gradient losses need each
token's log π, not a summed cross-entropy). Equal to the plain path to float rounding
(``tests/test_lm_head.py``). Which path serves a model: :func:`head_weight`.
"""

from __future__ import annotations

from typing import Any

import torch

from policygrad.lm.model import TransformerLM

HEAD_PATHS = ("auto", "chunked", "full")
# Measured (`python benchmarks/lm_vocab.py --compare --vocabs 16,128,512,2048,8192 --paths
# reference,fused,chunked`, docs/lm.md): the paths are level up to 512 tokens, chunked wins from 2,048.
CHUNKED_FROM_VOCAB = 1024
# Rows per block: 4M logits (16 MB, 131 rows at 32K). Smaller blocks would fit a core's
# cache but starve the matrix product (measured: at 8 rows per block it takes 3x as long as at 128).
BLOCK_ELEMENTS = 1 << 22


def check_head_path(path: str) -> None:
    """Raise ValueError unless ``path`` is one of :data:`HEAD_PATHS`."""
    if path not in HEAD_PATHS:
        raise ValueError(f"unknown head_path {path!r}; choose from {', '.join(HEAD_PATHS)}")


def set_head_path(model: Any, path: str) -> None:
    """Choose how ``model``'s head is evaluated: ``auto``, ``chunked`` or ``full`` (:func:`head_weight`).

    Stored on the model (a deep copy, such as the policy made from the reference, keeps it).
    """
    check_head_path(path)
    model.head_path = path


def head_weight(model: Any) -> torch.Tensor | None:
    """The head's weight (V, d) when ``model`` takes the chunked path, else None (the plain logits).

    ``auto`` (the default) chunks from :data:`CHUNKED_FROM_VOCAB` tokens. Only
    policygrad's own :class:`~policygrad.lm.model.TransformerLM` has a chunked path;
    a Hugging Face policy reads its 16 task logits and always takes the plain one.
    """
    if not isinstance(model, TransformerLM):
        return None
    path = getattr(model, "head_path", "auto")
    if path == "full" or (path == "auto" and model.vocab_size < CHUNKED_FROM_VOCAB):
        return None
    return model.head.weight


def _block_rows(vocab_size: int) -> int:
    return max(1, BLOCK_ELEMENTS // vocab_size)


class ChunkedLogProbs(torch.autograd.Function):
    """log π(targets) and the entropy from hidden states and the head's weight, by blocks of rows (module doc)."""

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, with_entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = hidden.shape[0]
        step = _block_rows(weight.shape[0])
        log_normalizer = hidden.new_empty(rows)
        log_probs = hidden.new_empty(rows)
        entropy = hidden.new_zeros(rows)
        logits = hidden.new_empty(min(step, rows), weight.shape[0])  # one block's buffers, reused
        shifted = torch.empty_like(logits)
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            z = torch.mm(hidden[start:stop], weight.t(), out=logits[: stop - start])
            # logsumexp by hand, so that the entropy reuses its exponentials: with z' = z − max z
            # (in place) and e = exp(z'), log Z = max z + log Σe and log π(y) = z'_y − log Σe
            top = z.amax(dim=-1, keepdim=True)
            z.sub_(top)
            e = torch.exp(z, out=shifted[: stop - start])
            total = e.sum(dim=-1, keepdim=True)
            log_total = total.log().squeeze(-1)
            log_normalizer[start:stop] = top.squeeze(-1) + log_total
            log_probs[start:stop] = z.gather(-1, targets[start:stop, None]).squeeze(-1) - log_total
            if with_entropy:  # H = log Σe − Σ e z' / Σe: two non-negative terms, no cancellation
                weighted = torch.linalg.vecdot(e, z).unsqueeze(-1)
                entropy[start:stop] = log_total - (weighted / total).squeeze(-1)
        ctx.save_for_backward(hidden, weight, targets, log_normalizer, entropy)
        ctx.set_materialize_grads(False)
        return log_probs, entropy

    @staticmethod
    def backward(
        ctx: Any, grad_log_probs: torch.Tensor | None, grad_entropy: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        hidden, weight, targets, log_normalizer, entropy = ctx.saved_tensors
        if grad_log_probs is None and grad_entropy is None:
            return None, None, None, None
        rows = hidden.shape[0]
        step = _block_rows(weight.shape[0])
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        block = hidden.new_empty(min(step, rows), weight.shape[0])
        factor = torch.empty_like(block) if grad_entropy is not None else None
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            h = hidden[start:stop]
            log_p = torch.mm(h, weight.t(), out=block[: stop - start]).sub_(log_normalizer[start:stop, None])
            if grad_entropy is None:
                grad_z = log_p.exp_().mul_(grad_log_probs[start:stop, None].neg())
            else:  # ∂L/∂z = −p ⊙ (g + g_H (log p + H)), then + g at y
                f = torch.add(log_p, entropy[start:stop, None], out=factor[: stop - start])
                f.mul_(grad_entropy[start:stop, None])
                if grad_log_probs is not None:
                    f.add_(grad_log_probs[start:stop, None])
                grad_z = log_p.exp_().mul_(f).neg_()
            if grad_log_probs is not None:
                grad_z.scatter_add_(-1, targets[start:stop, None], grad_log_probs[start:stop, None])
            if grad_hidden is not None:
                torch.mm(grad_z, weight, out=grad_hidden[start:stop])
            if grad_weight is not None:
                grad_weight.addmm_(grad_z.t(), h)
        return grad_hidden, grad_weight, None, None


def token_log_probs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(h Wᵀ)[target] per row, and the full-distribution entropy when asked.

    ``hidden`` (M, d) and ``weight`` (V, d) (differentiable), ``targets`` (M,) token ids.
    Returns ``(log_probs, entropy)``, each (M,) (entropy None unless ``with_entropy``).
    """
    log_probs, entropy = ChunkedLogProbs.apply(hidden, weight, targets, with_entropy)
    return log_probs, entropy if with_entropy else None


@torch.no_grad()
def sample_from_hidden(
    hidden: torch.Tensor, weight: torch.Tensor, uniforms: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of logits h Wᵀ / ``temperature``: ``(tokens, log_probs)``, each (B,).

    ``hidden`` (B, d), ``uniforms`` (B,). The inverse CDF of
    :func:`~policygrad.lm.generation.inverse_cdf_sample`, row block by row block;
    ``temperature`` 0 is greedy (argmax).
    """
    rows = hidden.shape[0]
    step = _block_rows(weight.shape[0])
    tokens = torch.empty(rows, dtype=torch.long)
    log_probs = hidden.new_empty(rows)
    logits = hidden.new_empty(min(step, rows), weight.shape[0])
    cdf = torch.empty_like(logits)
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        z = torch.mm(hidden[start:stop], weight.t(), out=logits[: stop - start])
        if temperature not in (0.0, 1.0):
            z.div_(temperature)
        top = z.amax(dim=-1, keepdim=True)
        e = torch.sub(z, top, out=cdf[: stop - start]).exp_()
        lse = top + e.sum(dim=-1, keepdim=True).log()
        if temperature == 0.0:
            token = z.argmax(-1, keepdim=True)
        else:  # the unnormalised CDF: the first i with F_i > u·F_V, as inverse_cdf_sample
            c = e.cumsum_(-1)
            token = torch.searchsorted(c, uniforms[start:stop, None] * c[:, -1:], right=True)
            token = token.clamp_(max=weight.shape[0] - 1)
        tokens[start:stop] = token.squeeze(-1)
        log_probs[start:stop] = (z.gather(-1, token) - lse).squeeze(-1)
    return tokens, log_probs
