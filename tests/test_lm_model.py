"""The transformer, its KV cache, inverse-CDF sampling, and model folders."""

import math

import pytest
import torch

from policygrad.errors import PolicygradError
from policygrad.lm.generation import generate, inverse_cdf_sample, sampling_uniforms, score
from policygrad.lm.model import ModelConfig, TransformerLM, load_model, save_model
from policygrad.lm.tasks import EOS, PAD


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    model = TransformerLM(
        ModelConfig(vocab_size=16, context_length=12, d_model=32, n_layers=2, n_heads=4, d_ff=64, **kw)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def test_kv_cache_matches_full_forward():
    model = small_model(value_head=True)
    tokens = torch.randint(0, 16, (3, 10))
    full = model(tokens)
    cache = model.new_cache(3, 10)
    out = model(tokens[:, :4], cache)
    logits, values = [out.logits], [out.values]
    for t in range(4, 10):
        out = model(tokens[:, t : t + 1], cache)
        logits.append(out.logits)
        values.append(out.values)
    torch.testing.assert_close(torch.cat(logits, 1), full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(values, 1), full.values, atol=1e-5, rtol=1e-5)


def test_attention_is_causal():
    model = small_model()
    a = torch.randint(0, 16, (1, 8))
    b = a.clone()
    b[0, 5:] = (b[0, 5:] + 1) % 16
    torch.testing.assert_close(model(a).logits[:, :5], model(b).logits[:, :5])


@pytest.mark.parametrize("vocab", [5, 32000])
def test_inverse_cdf_sampling_matches_softmax(vocab):
    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(1, vocab, generator=g) * 2
    logits[0, :3] += 6.0  # a few likely tokens, a long unlikely tail
    n = 40000 if vocab < 100 else 3000
    tokens, log_probs = inverse_cdf_sample(logits.expand(n, vocab), torch.rand(n, generator=g))
    probs = torch.softmax(logits[0].double(), 0)
    torch.testing.assert_close(log_probs.double(), probs.log()[tokens], atol=1e-4, rtol=1e-4)
    # Pearson chi-square over the 3 likely tokens and the rest pooled
    observed = torch.stack([(tokens == i).sum() for i in range(3)] + [(tokens >= 3).sum()]).double()
    expected = n * torch.cat([probs[:3], probs[3:].sum(0, keepdim=True)])
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < 16.3, chi2  # 99.9 % quantile of chi-square with 3 degrees of freedom


def test_zero_probability_tokens_are_never_drawn():
    logits = torch.tensor([[0.0, -math.inf, 0.0, -math.inf]]).expand(1000, 4)
    tokens, _ = inverse_cdf_sample(logits, torch.rand(1000, generator=torch.Generator().manual_seed(0)))
    assert set(tokens.tolist()) <= {0, 2}


def test_generate_log_probs_and_values_match_scoring():
    model = small_model(value_head=True)
    prompts = torch.randint(3, 16, (6, 3))
    g = torch.Generator().manual_seed(1)
    samples = generate(model, prompts, 6, sampling_uniforms(g, 6, 6))
    scored = score(model, prompts, samples.responses)
    torch.testing.assert_close(scored.log_probs * samples.mask, samples.log_probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scored.values * samples.mask, samples.values, atol=1e-5, rtol=1e-5)
    # after <eos> everything is padding and masked
    for row, mask in zip(samples.responses, samples.mask, strict=True):
        ends = (row == EOS).nonzero()
        if len(ends):
            end = int(ends[0])
            assert mask[: end + 1].all() and not mask[end + 1 :].any()
            assert (row[end + 1 :] == PAD).all()


def test_same_uniforms_same_samples():
    model = small_model()
    prompts = torch.randint(3, 16, (4, 3))
    u = sampling_uniforms(torch.Generator().manual_seed(3), 4, 5)
    a, b = generate(model, prompts, 5, u), generate(model, prompts, 5, u)
    assert torch.equal(a.responses, b.responses)


def test_save_load_round_trip(tmp_path):
    model = small_model(value_head=True)
    save_model(model, tmp_path / "m", {"task": "sum"})
    loaded = load_model(tmp_path / "m")
    tokens = torch.randint(0, 16, (2, 7))
    torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits)
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_bad_model_folder_is_one_clear_error(tmp_path):
    with pytest.raises(PolicygradError, match="not a model folder"):
        load_model(tmp_path)
    with pytest.raises(PolicygradError, match="context_length"):
        small_model()(torch.zeros(1, 13, dtype=torch.long))
