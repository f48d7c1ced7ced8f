"""Pretraining the reference model: next-token prediction on a task's generated corpus.

The loss is the cross-entropy of the response tokens given the prompt,
−(1/|y|) Σ_t log π_θ(y_t | prompt, y_<t), on fresh corpus batches every step (the
corpus is generated, so it never repeats). The result is fluent — it writes
well-formed responses — but only as good at the task as the corpus, which is the
starting point RL fine-tuning is meant to improve.

``architecture`` chooses the model: policygrad's own transformer, or a randomly
initialised Hugging Face ``llama`` / ``qwen2`` of the same width, depth and heads
(:func:`~policygrad.lm.hf.new_hf_policy`, the ``[hf]`` extra), saved as an ordinary
Hugging Face model folder (``config.json``, safetensors, a word-level tokenizer over
the 16 task tokens) that ``policygrad lm train --ref`` and ``transformers`` load offline.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from policygrad.config import non_negative, positive, setting
from policygrad.errors import PolicygradError
from policygrad.lm.config import validate_fields
from policygrad.lm.generation import generate, sampling_uniforms
from policygrad.lm.model import ModelConfig, TransformerLM
from policygrad.lm.models import save_policy_model
from policygrad.lm.tasks import PAD, Task, get_task
from policygrad.run_log import make_progress
from policygrad.seeding import Stream, stream_seed

#: Models ``policygrad lm pretrain`` builds: its own transformer, or Hugging Face ones.
ARCHITECTURES = ("policygrad", "llama", "qwen2")


@dataclass(frozen=True)
class PretrainConfig:
    """Reference pretraining: the model's size and the optimisation budget."""

    seed: int = setting(0, non_negative, ">= 0", "seed of the corpus and the initial weights")
    steps: int = setting(1200, positive, "> 0", "optimiser steps, each on a fresh corpus batch")
    batch_size: int = setting(128, positive, "> 0", "sequences per step")
    learning_rate: float = setting(3e-3, positive, "> 0", "peak AdamW learning rate (cosine decay)")
    warmup_steps: int = setting(100, non_negative, ">= 0", "linear learning-rate warm-up")
    weight_decay: float = setting(0.01, non_negative, ">= 0", "AdamW weight decay")
    vocab_size: int = setting(16, lambda v: v >= 16, ">= 16", "vocabulary size (16, or e.g. 32000 with filler)")
    d_model: int = setting(64, positive, "> 0", "transformer width")
    n_layers: int = setting(2, positive, "> 0", "transformer blocks")
    n_heads: int = setting(4, positive, "> 0", "attention heads")
    d_ff: int = setting(128, positive, "> 0", "MLP hidden width")
    eval_prompts: int = setting(512, positive, "> 0", "prompts sampled to measure the reference's reward")
    max_seconds: float | None = setting(
        None, lambda v: v is None or v > 0, "> 0 or none", "also stop after this many seconds (the schedule follows)"
    )
    threads: int = setting(1, positive, "> 0", "torch CPU threads")
    architecture: str = setting(
        "policygrad",
        lambda v: v in ARCHITECTURES,
        ", ".join(ARCHITECTURES),
        "policygrad's transformer, or a Hugging Face Llama or Qwen2 (the [hf] extra) of the same size",
    )

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.architecture != "policygrad" and self.vocab_size != 16:
            raise PolicygradError("a Hugging Face architecture speaks the 16 task tokens: drop --vocab-size")

    def model_config(self, task: Task) -> ModelConfig:
        return ModelConfig(
            vocab_size=self.vocab_size,
            context_length=task.sequence_length,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            d_ff=self.d_ff,
        )


def learning_rate_at(step: int, cfg: PretrainConfig, time_progress: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak over the steps (or the time budget, if nearer)."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = max((step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps), time_progress)
    return cfg.learning_rate * (0.1 + 0.45 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def new_model(cfg: PretrainConfig, task: Task) -> Any:
    """The randomly initialised model of ``cfg.architecture`` (seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    if cfg.architecture == "policygrad":
        return TransformerLM(cfg.model_config(task))
    from policygrad.lm.hf import new_hf_policy

    return new_hf_policy(
        cfg.architecture, cfg.d_model, cfg.d_ff, cfg.n_layers, cfg.n_heads, task.sequence_length, cfg.seed
    )


def pretrain(task_name: str, cfg: PretrainConfig, out: Path | None = None, quiet: bool = False) -> tuple[Any, dict]:
    """Pretrain a reference for ``task_name``; save it to ``out`` (when given). Returns (model, stats)."""
    task = get_task(task_name, cfg.vocab_size)
    torch.set_num_threads(cfg.threads)
    model = new_model(cfg, task)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(stream_seed(cfg.seed, Stream.LM_PRETRAIN))
    prompt_length = task.prompt_length
    start = time.perf_counter()
    loss_value = float("nan")
    done = 0
    progress = make_progress(quiet)
    with progress:
        bar = progress.add_task(f"pretrain {task_name}", total=cfg.steps)
        for step in range(cfg.steps):
            time_progress = (time.perf_counter() - start) / cfg.max_seconds if cfg.max_seconds else 0.0
            if time_progress >= 1.0:
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, cfg, time_progress)
            sequences = task.corpus(cfg.batch_size, generator)
            logits = model(sequences[:, :-1]).logits[:, prompt_length - 1 :]
            targets = sequences[:, prompt_length:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            loss_value = loss.item()
            done = step + 1
            if step % 25 == 0 or step == cfg.steps - 1:
                elapsed = time.perf_counter() - start
                progress.update(bar, completed=step + 1, sps=(step + 1) / max(elapsed, 1e-9), ret=-loss_value)
    seconds = time.perf_counter() - start
    stats = {
        "task": task_name,
        "pretrain_seconds": seconds,
        "final_loss": loss_value,
        "steps": done,
        **evaluate_model(model, task, cfg),
    }
    stats["parameters"] = model.num_parameters()
    if out is not None:
        save_policy_model(model, Path(out), {"task": task_name, "pretrain": dataclasses.asdict(cfg), "stats": stats})
    if not quiet:
        print(
            f"pretrained a {stats['parameters']:,}-parameter reference for '{task_name}' in {seconds:.1f} s: "
            f"loss {loss_value:.3f}, reward {stats['reward_mean']:.3f}, success {stats['success_rate']:.3f}"
            + (f"; saved to {out}" if out is not None else ""),
            file=sys.stderr,
        )
    return model, stats


@torch.no_grad()
def evaluate_model(model: Any, task: Task, cfg: Any, stream: Stream = Stream.LM_PRETRAIN_EVAL) -> dict[str, float]:
    """Mean reward, success rate and response length of ``model`` on ``cfg.eval_prompts`` sampled prompts."""
    generator = torch.Generator().manual_seed(stream_seed(cfg.seed, stream))
    prompts = task.prompts(cfg.eval_prompts, generator)
    samples = generate(
        model,
        prompts,
        task.response_length,
        sampling_uniforms(generator, cfg.eval_prompts, task.response_length),
        task.stop_at_eos,
    )
    return {
        "reward_mean": task.reward(prompts, samples.responses).mean().item(),
        "success_rate": task.success(prompts, samples.responses).float().mean().item(),
        "response_length_mean": samples.lengths.float().mean().item(),
    }


def default_reference_dir(task_name: str, vocab_size: int, seed: int, architecture: str = "policygrad") -> Path:
    suffix = ("" if vocab_size == 16 else f"-v{vocab_size}") + (
        "" if architecture == "policygrad" else f"-{architecture}"
    )
    return Path("runs") / f"lm-ref-{task_name}{suffix}-seed{seed}"


def check_new_folder(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        raise PolicygradError(f"{path} already exists and is not empty; choose another --out")


__all__ = ["PretrainConfig", "pretrain", "evaluate_model", "dataclasses"]
