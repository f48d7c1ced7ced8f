"""Sampling from a run folder (its final policy or newest checkpoint) or from a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from policygrad.errors import PolicygradError
from policygrad.lm.generation import generate, sampling_uniforms
from policygrad.lm.hf import TASK_KEY
from policygrad.lm.model import read_model_config
from policygrad.lm.models import load_policy_model
from policygrad.lm.tasks import BASE_TOKENS, get_task
from policygrad.seeding import Stream, stream_seed


def load_for_sampling(folder: Path) -> tuple[torch.nn.Module, Any]:
    """(model, task) of an lm run folder (final policy, else newest checkpoint) or of a model folder."""
    from policygrad.lm.checkpoint import load_latest_lm
    from policygrad.lm.trainer import POLICY_DIR, read_run_config

    if not folder.is_dir():
        raise PolicygradError(f"{folder} does not exist (train first: policygrad lm train ALGO TASK --out {folder})")
    if (folder / "checkpoints").is_dir() or (folder / "metrics.csv").exists():
        saved = read_run_config(folder)
        task = get_task(saved["config"]["task"], saved["vocab_size"])
        if (folder / POLICY_DIR).is_dir():
            model, _ = load_policy_model(folder / POLICY_DIR, task)
            return model, task
        model, _ = load_policy_model(Path(saved["reference"]), task)
        if saved["config"].get("lora_rank"):  # the checkpoint holds the adapters only
            model.add_lora(saved["config"]["lora_rank"], saved["config"]["lora_alpha"])
        checkpoint = load_latest_lm(folder)
        if any(k.startswith("value_head") for k in checkpoint.model):
            model.add_value_head()
        checkpoint.restore(model, None)
        return model, task
    if not (folder / "config.json").is_file():
        raise PolicygradError(f"{folder} is neither an lm run folder nor a model folder")
    config = read_model_config(folder)
    task_name = config.get("task", config.get(TASK_KEY))  # ours, or a Hugging Face model policygrad trained
    if task_name is None:
        raise PolicygradError(f"{folder} does not say which task it was trained on")
    task = get_task(task_name, config["model"]["vocab_size"] if "model" in config else len(BASE_TOKENS))
    model, _ = load_policy_model(folder, task)
    return model, task


@torch.no_grad()
def sample_folder(folder: Path, n: int, seed: int = 0, temperature: float = 1.0) -> list[dict[str, Any]]:
    """``n`` prompts and sampled responses with their rewards, as dicts of strings and floats."""
    if temperature < 0:
        raise PolicygradError(f"--temperature must be >= 0 (got {temperature})")
    model, task = load_for_sampling(Path(folder))
    generator = torch.Generator().manual_seed(stream_seed(seed, Stream.LM_SAMPLE))
    prompts = task.prompts(n, generator)
    uniforms = sampling_uniforms(generator, n, task.response_length)
    samples = generate(model, prompts, task.response_length, uniforms, task.stop_at_eos, temperature)
    rewards = task.reward(prompts, samples.responses)
    return [
        {
            "prompt": task.vocab.decode(prompts[i]),
            "response": task.vocab.decode(samples.responses[i]),
            "reward": rewards[i].item(),
        }
        for i in range(n)
    ]
