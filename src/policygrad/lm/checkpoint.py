"""Checkpoints of a token-training run, with policygrad's conventions (see :mod:`policygrad.checkpoint`).

``checkpoints/update_0000100/`` holds ``model.safetensors`` (the policy, value head
included), ``optimizer.safetensors`` and ``state.json`` (update, counters, RNG state);
it is written into a temporary folder and renamed into place, and ``checkpoints/latest``
names the newest. Prompts and sampling noise are keyed by (seed, update), so weights,
optimiser and counters are all a resume needs to continue bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from policygrad.checkpoint import StoredCheckpoint, newest_readable, write_checkpoint
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
    return write_checkpoint(run_dir, update, model, optimizer, state, keep=keep, resume="policygrad lm resume")


class LMCheckpoint(StoredCheckpoint):
    """A loaded checkpoint: JSON state, policy weights, optimiser tensors."""

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        """Load the weights into ``model`` (and ``optimizer``'s state), and restore torch's RNG."""
        try:
            model.load_state_dict(self.model)
        except RuntimeError as err:
            raise PolicygradError(f"checkpoint {self.path} does not match the model: {err}") from None
        if optimizer is not None:
            self.restore_optimizer(optimizer)
        self.restore_rng()


def load_latest_lm(run_dir: Path, from_checkpoint: int | None = None) -> LMCheckpoint:
    """The newest checkpoint of a run (or ``from_checkpoint``); an error naming it if it cannot be read."""
    return newest_readable(Path(run_dir), LMCheckpoint, "policygrad lm", from_checkpoint, "policygrad lm resume")
