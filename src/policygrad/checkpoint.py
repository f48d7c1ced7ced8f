"""Checkpoints: atomic, exact, and readable without policygrad's classes.

A checkpoint is a folder ``checkpoints/update_000040/`` holding

- ``model.safetensors`` — the agent's weights (and observation-normaliser buffers),
- ``optimizer.safetensors`` — the optimiser's tensors,
- ``state.json`` — config, env step, optimiser hyperparameters, every RNG state,
  normaliser statistics, the rollout collector's state, the agent's architecture,
- the environments' state (episodes in flight, their random generators, the
  normalisers) as data in ``state.json`` (:mod:`policygrad.env_state`): with it, a
  resumed run is bit-identical to an uninterrupted one. Only for environments
  policygrad cannot save as data is it ``envs.pkl``, a pickle that resume unpickles
  only with ``--trust-run-folder`` (unpickling runs code from the file).

It is written into a temporary folder and renamed into place (atomic on POSIX), and
``checkpoints/latest`` (written the same way) names the newest complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
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

#: For the fault-injection tests only: ``UPDATE:STAGE:PATH`` makes the write of checkpoint UPDATE
#: create PATH at STAGE (one of :data:`PAUSE_STAGES`) and wait while PATH exists, so a test can
#: kill the writer there. Read once per checkpoint, and nothing happens when it is unset.
PAUSE_VARIABLE = "POLICYGRAD_TEST_PAUSE_IN_CHECKPOINT"
#: ``model``: only the weights are in the temporary folder; ``renaming``: the temporary folder is
#: complete, not yet renamed; ``latest``: renamed into place, ``latest`` not yet updated; ``done``:
#: the write has returned nothing yet to its caller (after the final update: before the summary).
PAUSE_STAGES = ("model", "renaming", "latest", "done")


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


def _pause_for_tests(pause: str | None, update: int, stage: str) -> None:
    if pause is None or pause.split(":", 2)[:2] != [str(update), stage]:
        return
    signal_file = Path(pause.split(":", 2)[2])
    signal_file.touch()
    while signal_file.exists():
        time.sleep(0.01)


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
    resume: str = "policygrad resume",
) -> Path:
    """Write checkpoint ``update`` atomically, point ``latest`` at it, prune all but ``keep``.

    A write that fails (a full disk, a folder made read-only) is a one-line error naming the
    file, the free space, the last intact checkpoint and the ``resume`` command.

    Writes ``model``'s weights, ``optimizer``'s tensors, ``state`` (plus the update, the
    optimiser's scalars and torch's RNG state) and any extra ``files`` (name → bytes).
    Shared by the Gymnasium trainer and the language-model trainer.
    """
    root = run_dir / "checkpoints"
    final = root / f"update_{update:07d}"
    current = root
    pause = os.environ.get(PAUSE_VARIABLE)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp_update_{update:07d}_"))
        try:
            current = final / MODEL_FILE
            weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            save_file(weights, str(tmp / MODEL_FILE))
            _pause_for_tests(pause, update, "model")
            current = final / OPTIMIZER_FILE
            opt_tensors, opt_meta = _optimizer_tensors(optimizer)
            save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
            current = final / STATE_FILE
            full_state = dict(state, update=update, optimizer=opt_meta, rng={"torch": torch.get_rng_state().tolist()})
            (tmp / STATE_FILE).write_text(json.dumps(full_state))
            for name, data in (files or {}).items():
                current = final / name
                (tmp / name).write_bytes(data)
            current = final
            for child in tmp.iterdir():
                with open(child, "rb") as handle:
                    os.fsync(handle.fileno())
            _pause_for_tests(pause, update, "renaming")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _pause_for_tests(pause, update, "latest")
        current = root / "latest"
        write_atomic(root / "latest", final.name.encode())
    except (OSError, SafetensorError) as err:
        raise write_error(run_dir, current, err, resume) from None
    for old in sorted(p for p in root.iterdir() if p.name.startswith("update_"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    _pause_for_tests(pause, update, "done")
    return final


def write_error(run_dir: Path, path: Path, err: BaseException, resume: str = "policygrad resume") -> PolicygradError:
    """The one-line error for a run-folder file that could not be written."""
    try:
        free = f"{shutil.disk_usage(run_dir).free / 2**20:,.0f} MiB free on its disk"
    except OSError:
        free = "free space unknown"
    reason = getattr(err, "strerror", None) or (str(err).strip().splitlines() or [type(err).__name__])[0]
    intact = checkpoint_dirs(run_dir)
    last = f"the last intact checkpoint is {intact[0].name}" if intact else "no checkpoint was written yet"
    return PolicygradError(
        f"could not write {path} ({reason}; {free}); training stopped and {last} — free space or make the "
        f"folder writable, then: {resume} {run_dir}"
    )


def save_checkpoint(
    run_dir: Path,
    update: int,
    agent: Agent,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    env_pickle: bytes | None = None,
    keep: int = 3,
) -> Path:
    """A training run's checkpoint: :func:`write_checkpoint` plus the agent's architecture.

    ``state`` holds the environments' state as data (``env_state``); ``env_pickle`` is
    their pickle, for environments that cannot be saved as data.
    """
    saved = state.get("env_state") is not None or env_pickle is not None
    full_state = dict(state, agent_spec=agent.spec.to_dict(), env_state_saved=saved)
    files = {ENVS_FILE: env_pickle} if env_pickle is not None else None
    return write_checkpoint(run_dir, update, agent, optimizer, full_state, files, keep)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints (renamed into place whole), newest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.name.startswith("update_") and p.is_dir()), reverse=True)


def update_of(path: Path) -> int:
    """The update a checkpoint folder ``update_0000040`` holds."""
    return int(path.name.split("_")[1])


class StoredCheckpoint:
    """A checkpoint folder as written by :func:`write_checkpoint`: JSON state, weights, optimiser tensors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.state: dict[str, Any] = json.loads((path / STATE_FILE).read_text())
            self.model = load_file(str(path / MODEL_FILE))
            self.optimizer = load_file(str(path / OPTIMIZER_FILE))
            if not isinstance(self.state, dict) or not isinstance(self.state.get("update"), int):
                raise ValueError(f"{STATE_FILE} holds no update number")
        except (OSError, ValueError, SafetensorError) as err:
            raise PolicygradError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err})") from None

    def restore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        _restore_optimizer(optimizer, self.optimizer, self.state["optimizer"])

    def restore_rng(self) -> None:
        torch.set_rng_state(torch.tensor(self.state["rng"]["torch"], dtype=torch.uint8))


def newest_readable(
    run_dir: Path,
    kind: type[CheckpointT],
    what: str,
    from_checkpoint: int | None = None,
    resume: str = "policygrad resume",
) -> CheckpointT:
    """The newest checkpoint of ``run_dir``, loaded as ``kind`` (or checkpoint ``from_checkpoint``).

    Never falls back silently: a newest checkpoint that cannot be read is an error naming it
    and why, and the older one the user may choose with ``--from-checkpoint N``. ``what``
    completes "is it a … run folder?" for a folder without checkpoints.
    """
    candidates = checkpoint_dirs(run_dir)
    if not candidates and (run_dir / "config.json").is_file():
        raise PolicygradError(
            f"{run_dir} has no checkpoint: its training was stopped before the first one; start it again with "
            f"the same train command and --out {run_dir}"
        )
    if not candidates:
        raise PolicygradError(f"{run_dir} has no checkpoints (is it a {what} run folder?)")
    if from_checkpoint is not None:
        chosen = [p for p in candidates if update_of(p) == from_checkpoint]
        if not chosen:
            have = ", ".join(str(update_of(p)) for p in candidates)
            raise PolicygradError(f"{run_dir} has no checkpoint of update {from_checkpoint} (it has: {have})")
        return kind(chosen[0])
    latest = run_dir / "checkpoints" / "latest"
    named = latest.read_text(errors="replace").strip() if latest.is_file() else ""
    if named.startswith("update_") and named > candidates[0].name and not (latest.parent / named).is_dir():
        raise PolicygradError(
            f"{latest} names {named}, which is missing; " + _older_hint(run_dir, kind, candidates, resume)
        )
    try:
        return kind(candidates[0])
    except PolicygradError as err:
        raise PolicygradError(f"{err}; " + _older_hint(run_dir, kind, candidates[1:], resume)) from None


def _older_hint(run_dir: Path, kind: type[CheckpointT], older: list[Path], resume: str) -> str:
    for path in older:
        try:
            kind(path)
        except PolicygradError:
            continue
        return (
            f"refusing to fall back past it, which would drop the updates after {update_of(path)}; to continue "
            f"from that checkpoint anyway: {resume} {run_dir} --from-checkpoint {update_of(path)}"
        )
    return "and no older checkpoint is readable"


def discard_newer(run_dir: Path, update: int) -> list[Path]:
    """Set aside (rename to ``.discarded_update_…``) every checkpoint newer than ``update``; returns them."""
    moved = []
    for path in checkpoint_dirs(run_dir):
        if update_of(path) > update:
            target = path.with_name(f".discarded_{path.name}")
            if target.exists():
                shutil.rmtree(target)
            os.replace(path, target)
            moved.append(target)
    if moved:
        write_atomic(run_dir / "checkpoints" / "latest", f"update_{update:07d}".encode())
        print(f"policygrad: set aside the newer checkpoints {', '.join(p.name for p in moved)}", file=sys.stderr)
    return moved


class Checkpoint(StoredCheckpoint):
    """A training run's checkpoint: also the agent's architecture and the environments' state."""

    @property
    def env_pickle(self) -> Path | None:
        """The pickled environments (``envs.pkl``), when the checkpoint holds them instead of data."""
        path = self.path / ENVS_FILE
        return path if path.is_file() else None

    def build_agent(self) -> Agent:
        """The agent with these weights."""
        try:
            agent = Agent(AgentSpec.from_dict(self.state["agent_spec"]))
            agent.load_state_dict(self.model)
        except (KeyError, RuntimeError, TypeError) as err:
            raise PolicygradError(f"checkpoint {self.path} does not match its architecture: {err}") from None
        return agent


def load_latest(run_dir: Path, from_checkpoint: int | None = None) -> Checkpoint:
    """The newest checkpoint of a run (or ``from_checkpoint``); an error if it cannot be read."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PolicygradError(
            f"run folder {run_dir} does not exist (train first: policygrad train ALGO ENV_ID --out {run_dir})"
        )
    return newest_readable(run_dir, Checkpoint, "policygrad", from_checkpoint)
