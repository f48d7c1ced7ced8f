"""Checkpoints of a token-training run, with policygrad's conventions (see :mod:`policygrad.checkpoint`).

``checkpoints/update_0000100/`` holds ``model.safetensors`` (the policy, value head
included), ``optimizer.safetensors`` and ``state.json`` (update, counters, RNG state);
it is written into a temporary folder and renamed into place, and ``checkpoints/latest``
names the newest. Prompts and sampling noise are keyed by (seed, update), so weights,
optimiser and counters are all a resume needs to continue bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from policygrad.checkpoint import (
    MODEL_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    _optimizer_tensors,
    _restore_optimizer,
    checkpoint_dirs,
    write_atomic,
)
from policygrad.errors import PolicygradError


def save_lm_checkpoint(
    run_dir: Path,
    update: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int = 3,
) -> Path:
    """Write checkpoint ``update`` atomically, point ``latest`` at it, prune old ones."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"update_{update:07d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp_update_{update:07d}_"))
    try:
        save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(tmp / MODEL_FILE))
        tensors, meta = _optimizer_tensors(optimizer)
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        full = dict(state, update=update, optimizer=meta, rng={"torch": torch.get_rng_state().tolist()})
        (tmp / STATE_FILE).write_text(json.dumps(full))
        for child in tmp.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(root / "latest", final.name.encode())
    for old in sorted(p for p in root.iterdir() if p.name.startswith("update_"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


class LMCheckpoint:
    """A loaded checkpoint: JSON state, policy weights, optimiser tensors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.state: dict[str, Any] = json.loads((path / STATE_FILE).read_text())
            self.model = load_file(str(path / MODEL_FILE))
            self.optimizer = load_file(str(path / OPTIMIZER_FILE))
        except (OSError, ValueError, SafetensorError) as err:
            raise PolicygradError(f"checkpoint {path} is corrupt or incomplete ({type(err).__name__}: {err})") from None

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        try:
            model.load_state_dict(self.model)
        except RuntimeError as err:
            raise PolicygradError(f"checkpoint {self.path} does not match the model: {err}") from None
        if optimizer is not None:
            _restore_optimizer(optimizer, self.optimizer, self.state["optimizer"])
        torch.set_rng_state(torch.tensor(self.state["rng"]["torch"], dtype=torch.uint8))


def load_latest_lm(run_dir: Path) -> LMCheckpoint:
    """The newest readable checkpoint of a run (older ones if the newest is damaged)."""
    candidates = checkpoint_dirs(run_dir)
    if not candidates:
        raise PolicygradError(f"{run_dir} has no checkpoints (is it a policygrad lm run folder?)")
    errors = []
    for path in candidates:
        try:
            return LMCheckpoint(path)
        except PolicygradError as err:
            errors.append(str(err))
    raise PolicygradError(f"no readable checkpoint in {run_dir}: {errors[0]}")
