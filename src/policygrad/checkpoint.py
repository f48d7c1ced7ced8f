"""Checkpoints: atomic, exact, and readable without policygrad's classes.

A checkpoint is a folder ``checkpoints/update_000040/`` holding

- ``model.safetensors`` — the agent's weights (and observation-normaliser buffers),
- ``optimizer.safetensors`` — the optimiser's tensors,
- ``state.json`` — config, env step, optimiser hyperparameters, every RNG state,
  normaliser statistics, the rollout collector's state, the agent's architecture,
- ``envs.pkl`` — the vector environment itself, when it can be saved (classic
  control can): with it, a resumed run is bit-identical to an uninterrupted one.

It is written into a temporary folder and renamed into place (atomic on POSIX), and
``checkpoints/latest`` (written the same way) names the newest complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from policygrad.agent import Agent, AgentSpec
from policygrad.errors import PolicygradError

STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
ENVS_FILE = "envs.pkl"

CheckpointT = TypeVar("CheckpointT", bound="StoredCheckpoint")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors = {}
    scalars: dict[str, Any] = {}
    for param_id, param_state in state["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{name}"] = value.detach().clone().contiguous()
            else:
                scalars[f"{param_id}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    for key, value in meta["scalars"].items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    # JSON turns tuples (Adam's betas) into lists; give them back their type.
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def write_checkpoint(
    run_dir: Path,
    update: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    files: dict[str, bytes] | None = None,
    keep: int = 3,
) -> Path:
    """Write checkpoint ``update`` atomically, point ``latest`` at it, prune all but ``keep``.

    Writes ``model``'s weights, ``optimizer``'s tensors, ``state`` (plus the update, the
    optimiser's scalars and torch's RNG state) and any extra ``files`` (name → bytes).
    Shared by the Gymnasium trainer and the language-model trainer.
    """
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"update_{update:07d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp_update_{update:07d}_"))
    try:
        save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(tmp / MODEL_FILE))
        opt_tensors, opt_meta = _optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
        full_state = dict(state, update=update, optimizer=opt_meta, rng={"torch": torch.get_rng_state().tolist()})
        (tmp / STATE_FILE).write_text(json.dumps(full_state))
        for name, data in (files or {}).items():
            (tmp / name).write_bytes(data)
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


def save_checkpoint(
    run_dir: Path,
    update: int,
    agent: Agent,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    env_blob: bytes | None,
    keep: int = 3,
) -> Path:
    """A training run's checkpoint: :func:`write_checkpoint` plus the agent's architecture and the envs."""
    full_state = dict(state, agent_spec=agent.spec.to_dict(), env_state_saved=env_blob is not None)
    files = {ENVS_FILE: env_blob} if env_blob is not None else None
    return write_checkpoint(run_dir, update, agent, optimizer, full_state, files, keep)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, newest first (``latest`` first when it is valid)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = sorted((p for p in root.iterdir() if p.name.startswith("update_") and p.is_dir()), reverse=True)
    latest = root / "latest"
    if latest.is_file():
        named = root / latest.read_text().strip()
        if named in found:
            found.remove(named)
            found.insert(0, named)
    return found


class StoredCheckpoint:
    """A checkpoint folder as written by :func:`write_checkpoint`: JSON state, weights, optimiser tensors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.state: dict[str, Any] = json.loads((path / STATE_FILE).read_text())
            self.model = load_file(str(path / MODEL_FILE))
            self.optimizer = load_file(str(path / OPTIMIZER_FILE))
        except (OSError, ValueError, SafetensorError) as err:
            raise PolicygradError(f"checkpoint {path} is corrupt or incomplete ({type(err).__name__}: {err})") from None

    def restore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        _restore_optimizer(optimizer, self.optimizer, self.state["optimizer"])

    def restore_rng(self) -> None:
        torch.set_rng_state(torch.tensor(self.state["rng"]["torch"], dtype=torch.uint8))


def newest_readable(run_dir: Path, kind: type[CheckpointT], what: str) -> CheckpointT:
    """The newest checkpoint of ``run_dir`` that loads as ``kind``; older ones if the newest is damaged.

    ``what`` completes "is it a … run folder?" in the error for a folder without checkpoints.
    """
    candidates = checkpoint_dirs(run_dir)
    if not candidates:
        raise PolicygradError(f"{run_dir} has no checkpoints (is it a {what} run folder?)")
    errors = []
    for path in candidates:
        try:
            return kind(path)
        except PolicygradError as err:
            errors.append(str(err))
    raise PolicygradError(f"no readable checkpoint in {run_dir}: {errors[0]}")


class Checkpoint(StoredCheckpoint):
    """A training run's checkpoint: also the agent's architecture and the pickled envs."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        env_file = path / ENVS_FILE
        self.env_blob = env_file.read_bytes() if env_file.is_file() else None

    def build_agent(self) -> Agent:
        """The agent with these weights."""
        try:
            agent = Agent(AgentSpec.from_dict(self.state["agent_spec"]))
            agent.load_state_dict(self.model)
        except (KeyError, RuntimeError, TypeError) as err:
            raise PolicygradError(f"checkpoint {self.path} does not match its architecture: {err}") from None
        return agent


def load_latest(run_dir: Path) -> Checkpoint:
    """The newest readable checkpoint of a run; falls back to older ones if the newest is damaged."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PolicygradError(
            f"run folder {run_dir} does not exist (train first: policygrad train ALGO ENV_ID --out {run_dir})"
        )
    return newest_readable(run_dir, Checkpoint, "policygrad")
