"""The fused per-token log-prob/entropy path equals autograd through log_softmax: values and gradients."""

import pytest
import torch

from policygrad.lm.generation import score
from policygrad.lm.model import ModelConfig, TransformerLM
from policygrad.lm.token_scores import token_scores, token_scores_reference


def scores_and_grad(fn, logits, tokens, with_entropy, entropy_weight):
    logits = logits.clone().requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    weights = torch.randn(tokens.shape, generator=g)
    log_probs, entropy = fn(logits, tokens, with_entropy)
    loss = (log_probs * weights).sum()
    if entropy_weight:
        loss = loss + entropy_weight * (entropy * weights.flip(0)).sum()
    loss.backward()
    return log_probs.detach(), entropy.detach() if entropy is not None else None, logits.grad


@pytest.mark.parametrize("with_entropy,entropy_weight", [(False, 0.0), (True, 0.0), (True, 0.7)])
@pytest.mark.parametrize("vocab", [5, 3000])
def test_fused_scores_equal_the_autograd_reference(vocab, with_entropy, entropy_weight):
    g = torch.Generator().manual_seed(vocab)
    logits = 3 * torch.randn(4, 6, vocab, generator=g)
    tokens = torch.randint(0, vocab, (4, 6), generator=g)
    ref = scores_and_grad(token_scores_reference, logits, tokens, with_entropy, entropy_weight)
    fused = scores_and_grad(token_scores, logits, tokens, with_entropy, entropy_weight)
    for a, b in zip(ref, fused, strict=True):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the reference's path: no graph, the same numbers
        log_probs, entropy = token_scores(logits, tokens, with_entropy)
    torch.testing.assert_close(log_probs, ref[0], rtol=1e-5, atol=1e-6)


def test_score_gives_the_same_gradients_with_either_scorer():
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=40, context_length=8, d_model=16, n_layers=1, n_heads=2, d_ff=32))
    prompts, responses = torch.randint(0, 40, (5, 3)), torch.randint(0, 40, (5, 4))
    grads = []
    for scorer in ("reference", "fused"):
        model.zero_grad()
        scores = score(model, prompts, responses, with_entropy=True, scorer=scorer)
        (scores.log_probs.sum() - 0.1 * scores.entropy.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
