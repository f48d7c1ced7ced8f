"""The chunked head equals the plain one: log-probs, entropies, their gradients, and sampling."""

import csv

import pytest
import torch

from policygrad.lm import head
from policygrad.lm.generation import generate, inverse_cdf_sample, sampling_uniforms, score
from policygrad.lm.head import head_weight, sample_from_hidden, set_head_path, token_log_probs
from policygrad.lm.model import ModelConfig, TransformerLM


def plain_scores(hidden, weight, targets):
    log_softmax = torch.log_softmax(hidden @ weight.T, dim=-1)
    log_probs = log_softmax.gather(-1, targets[:, None]).squeeze(-1)
    return log_probs, -(log_softmax.exp() * log_softmax).sum(-1)


@pytest.mark.parametrize("entropy_weight", [None, 0.0, 0.7])
@pytest.mark.parametrize("vocab", [5, 32000])
def test_chunked_log_probs_and_gradients_equal_autograd(vocab, entropy_weight, monkeypatch):
    monkeypatch.setattr(head, "BLOCK_ELEMENTS", 3 * vocab)  # several blocks and a ragged last one
    g = torch.Generator().manual_seed(vocab)
    hidden = torch.randn(20, 16, generator=g, dtype=torch.float64)
    weight = torch.randn(vocab, 16, generator=g, dtype=torch.float64)
    targets = torch.randint(0, vocab, (20,), generator=g)
    upstream = torch.randn(2, 20, generator=g, dtype=torch.float64)
    results = []
    for chunked in (False, True):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        if chunked:
            log_probs, entropy = token_log_probs(h, w, targets, with_entropy=entropy_weight is not None)
        else:
            log_probs, entropy = plain_scores(h, w, targets)
        loss = (upstream[0] * log_probs).sum()
        if entropy_weight is not None:
            loss = loss + entropy_weight * (upstream[1] * entropy).sum()
        loss.backward()
        results.append((log_probs.detach(), entropy, h.grad, w.grad))
    (lp, ent, gh, gw), (lp_c, ent_c, gh_c, gw_c) = results
    torch.testing.assert_close(lp_c, lp, rtol=1e-10, atol=1e-10)
    if entropy_weight is not None:
        torch.testing.assert_close(ent_c.detach(), ent.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gh_c, gh, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw_c, gw, rtol=1e-10, atol=1e-10)


def model_pair(vocab):
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=vocab, context_length=12, d_model=32, n_heads=4, value_head=True))
    with torch.no_grad():
        model.head.weight.normal_(0.0, 0.3)  # a spread-out distribution, not a near-uniform one
    chunked, full = model, TransformerLM(model.cfg)
    full.load_state_dict(model.state_dict())
    set_head_path(chunked, "chunked")
    set_head_path(full, "full")
    return chunked, full


@pytest.mark.parametrize("vocab", [16, 32000])
def test_score_on_the_chunked_head_equals_the_plain_path_float32(vocab):
    chunked, full = model_pair(vocab)
    prompts, responses = torch.randint(0, vocab, (12, 4)), torch.randint(0, vocab, (12, 5))
    grads = []
    for model in (full, chunked):
        scores = score(model, prompts, responses, with_entropy=True)
        (scores.log_probs.sum() - 0.1 * scores.entropy.sum() + scores.values.sum()).backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
        grads[-1]["scores"] = torch.stack([scores.log_probs, scores.entropy, scores.values]).detach()
    for name, expected in grads[0].items():
        torch.testing.assert_close(grads[1][name], expected, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_generation_on_the_chunked_head_draws_the_same_tokens(temperature):
    chunked, full = model_pair(32000)
    prompts = torch.randint(0, 32000, (40, 4))
    uniforms = sampling_uniforms(torch.Generator().manual_seed(3), 40, 6)
    a = generate(full, prompts, 6, uniforms, stop_at_eos=False, temperature=temperature)
    b = generate(chunked, prompts, 6, uniforms, stop_at_eos=False, temperature=temperature)
    assert torch.equal(a.responses, b.responses)
    torch.testing.assert_close(b.log_probs, a.log_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.values, a.values)


def test_chunked_sampler_equals_inverse_cdf_row_by_row(monkeypatch):
    monkeypatch.setattr(head, "BLOCK_ELEMENTS", 7 * 500)
    g = torch.Generator().manual_seed(0)
    hidden, weight, uniforms = torch.randn(30, 8, generator=g), torch.randn(500, 8, generator=g), torch.rand(30)
    tokens, log_probs = sample_from_hidden(hidden, weight, uniforms)
    expected_tokens, expected_log_probs = inverse_cdf_sample(hidden @ weight.T, uniforms)
    assert torch.equal(tokens, expected_tokens)
    torch.testing.assert_close(log_probs, expected_log_probs)


def test_auto_chunks_large_vocabularies_only():
    small, large = (TransformerLM(ModelConfig(vocab_size=v)) for v in (16, head.CHUNKED_FROM_VOCAB))
    assert head_weight(small) is None and head_weight(large) is large.head.weight
    set_head_path(small, "chunked")
    set_head_path(large, "full")
    assert head_weight(small) is small.head.weight and head_weight(large) is None
    with pytest.raises(ValueError, match="head_path"):
        set_head_path(small, "fast")


def test_head_path_setting_trains_the_same_run(tmp_path, sum_reference):
    """--set head_path=chunked and =full give the same RLOO run (to float rounding), from the command line."""
    from policygrad.cli import main

    logs = []
    for path in ("full", "chunked"):
        out = tmp_path / path
        argv = ["lm", "train", "rloo", "sum", "--ref", str(sum_reference), "--out", str(out), "--updates", "3"]
        argv += ["--set", "prompts_per_update=8", "--set", f"head_path={path}", "--set", "max_train_seconds=none"]
        assert main([*argv, "--set", "eval_prompts=32", "--quiet"]) == 0
        with open(out / "metrics.csv", newline="") as handle:
            logs.append([{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)])
    for full, chunked in zip(*logs, strict=True):
        for key in full.keys() - {"wall_time", "tokens_per_second"}:
            assert chunked[key] == pytest.approx(full[key], rel=1e-4, abs=1e-5), key
