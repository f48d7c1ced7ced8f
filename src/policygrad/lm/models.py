"""Loading and saving policy models: policygrad's own transformer, or a local Hugging Face model.

A folder whose ``config.json`` says ``"format": "policygrad-lm"`` is ours
(:mod:`policygrad.lm.model`); any other folder with a ``config.json`` (or a ``.gguf``
file, or peft's ``adapter_config.json``) is treated as a Hugging Face causal LM and loaded
through :mod:`policygrad.lm.hf` (the optional ``[hf]`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from policygrad.errors import PolicygradError
from policygrad.lm.model import CONFIG_FILE, MODEL_FORMAT, TransformerLM, load_model, read_model_config, save_model
from policygrad.lm.tasks import Task


def is_hf_model(path: Path | str) -> bool:
    """Whether ``path`` looks like a Hugging Face model folder rather than a policygrad one."""
    path = Path(path)
    if not path.is_dir():
        return False
    config = path / CONFIG_FILE
    if (path / "adapter_config.json").is_file():  # peft's LoRA adapters over a Hugging Face base model
        return True
    if config.is_file():
        return read_model_config(path).get("format") != MODEL_FORMAT
    return any(path.glob("*.gguf"))


def load_policy_model(path: Path | str, task: Task) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model in ``path`` and its metadata (``task`` it was pretrained on, when known)."""
    path = Path(path)
    if not path.is_dir():
        raise PolicygradError(f"model folder {path} does not exist (create one: policygrad lm pretrain {task.name})")
    if is_hf_model(path):
        from policygrad.lm.hf import load_hf_policy

        return load_hf_policy(path, task), {}
    info = read_model_config(path)
    trained_on = info.get("task")
    if trained_on is not None and trained_on != task.name:
        raise PolicygradError(
            f"the model in {path} was pretrained on '{trained_on}', not '{task.name}' "
            f"(pretrain one: policygrad lm pretrain {task.name})"
        )
    model = load_model(path)
    if model.vocab_size != task.vocab.size:
        raise PolicygradError(
            f"the model in {path} has a {model.vocab_size}-token vocabulary, the task {task.vocab.size} "
            f"(use --vocab-size {model.vocab_size})"
        )
    if model.cfg.context_length < task.sequence_length:
        raise PolicygradError(
            f"the model in {path} has context_length {model.cfg.context_length}; task '{task.name}' needs "
            f"{task.sequence_length}"
        )
    return model, info


def save_policy_model(model: torch.nn.Module, folder: Path, extra: dict[str, Any]) -> None:
    """Save a trained policy as a model folder: ours (``extra`` in its config), or a Hugging Face one (its task)."""
    if isinstance(model, TransformerLM):
        save_model(model, folder, extra)
    else:
        model.save(folder, task=extra.get("task"))


__all__ = ["is_hf_model", "load_policy_model", "save_policy_model", "TransformerLM"]
