"""The run folder, shared by Gymnasium runs (:mod:`policygrad.trainer`) and language-model runs.

A run folder holds ``config.json`` (what was asked for), ``metrics.csv`` and
``tensorboard/`` (one row per update, see :mod:`policygrad.run_log`), ``checkpoints/``
(see :mod:`policygrad.checkpoint`) and, once training ends, ``summary.json``. This
module owns their names, the default folder name, reading and writing the config with
one-line errors, the summary, and the message for a loss that stopped being finite.

A run folder is data: reading one parses JSON and never executes code from it. Every
file written here is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from policygrad.checkpoint import checkpoint_dirs, write_atomic
from policygrad.config import build_config
from policygrad.errors import NonFiniteLossError, PolicygradError
from policygrad.locks import release, take_exclusive

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"
#: What :func:`policygrad.checkpoint.write_atomic` names its temporary files (``.<name>.<random>``).
TEMPORARY_PREFIXES = tuple(f".{name}." for name in (CONFIG_FILE, SUMMARY_FILE, METRICS_FILE, "latest"))

#: ``"gym"``: a Gymnasium run (``policygrad train``); ``"lm"``: a language-model run (``policygrad lm train``).
RunKind = Literal["gym", "lm"]

_TRAIN = {"gym": "policygrad train ALGO ENV_ID", "lm": "policygrad lm train ALGO TASK"}
_RESUME = {"gym": "policygrad resume", "lm": "policygrad lm resume"}
_NAME = {"gym": "Gymnasium", "lm": "language-model"}
_REQUIRED = {"gym": (("config", "env_id"),), "lm": (("reference",), ("vocab_size",), ("config", "task"))}


def default_run_dir(algo: str, target: str, seed: int, prefix: str = "") -> Path:
    """``runs/<prefix><algo>-<target>-seed<seed>``, with a numeric suffix if that exists.

    ``target`` is the env id (``/`` becomes ``_``) or the task; language-model runs use ``prefix="lm-"``.
    """
    base = Path("runs") / f"{prefix}{algo}-{target.replace('/', '_')}-seed{seed}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds (part of) a run: a complete checkpoint, or rows of metrics.

    A writer killed before its first checkpoint leaves nothing to resume: ``train`` starts over there.
    """
    if checkpoint_dirs(run_dir):
        return True
    try:
        with open(run_dir / METRICS_FILE, "rb") as handle:
            return len(handle.read(1 << 16).splitlines()) > 1  # more than the header
    except OSError:
        return False


def check_new_run_dir(run_dir: Path, kind: RunKind = "gym") -> None:
    """A clear error if ``run_dir`` already holds a run (a new run never overwrites one) or is a file."""
    if run_dir.exists() and not run_dir.is_dir():
        raise PolicygradError(f"--out {run_dir} is a file, not a folder; choose a folder for the run")
    if holds_run(run_dir):
        if (run_dir / LOCK_FILE).exists():
            lock_run_dir(run_dir).release()  # a folder still being written names its writer
        raise PolicygradError(
            f"{run_dir} already holds a run; continue it with '{_RESUME[kind]} {run_dir}' or choose another --out"
        )


def run_kind(saved: dict[str, Any]) -> RunKind:
    """Which trainer wrote this ``config.json``: language-model runs name their reference model."""
    return "lm" if "reference" in saved or "task" in saved.get("config", {}) else "gym"


def read_run_config(run_dir: Path, kind: RunKind = "gym") -> dict[str, Any]:
    """The ``config.json`` of a ``kind`` run folder, or a one-line :class:`PolicygradError`.

    Names what is wrong: no such folder, not a run folder, a corrupt config, or a run
    folder of the other kind (and the command that opens it).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PolicygradError(f"run folder {run_dir} does not exist (train first: {_TRAIN[kind]} --out {run_dir})")
    path = run_dir / CONFIG_FILE
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise PolicygradError(f"{run_dir} is not a policygrad run folder (no {CONFIG_FILE})") from None
    except (OSError, ValueError) as err:
        raise PolicygradError(f"{path} is corrupt ({err}); the run folder cannot be read") from None
    if not isinstance(saved, dict):
        raise PolicygradError(f"{path} is corrupt (not a JSON object); the run folder cannot be read")
    if "algo" not in saved or not isinstance(saved.get("config"), dict):  # e.g. a model folder's config.json
        raise PolicygradError(f"{run_dir} is not a policygrad run folder (its {CONFIG_FILE} describes no run)")
    found = run_kind(saved)
    if found != kind:
        raise PolicygradError(f"{run_dir} is a {_NAME[found]} run folder; use '{_RESUME[found]} {run_dir}'")
    for keys in _REQUIRED[kind]:
        value: Any = saved
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                raise PolicygradError(f"{path} is corrupt (no {'.'.join(keys)}); the run folder cannot be read")
            value = value[key]
    return saved


def read_resume_config(
    run_dir: Path, kind: RunKind, get_algorithm: Callable[[str], Any], budget_field: str, budget: int | None
) -> tuple[dict[str, Any], Any, RunLock]:
    """The saved ``config.json``, its config object and the run folder's lock, to resume the run.

    The folder is locked (:func:`lock_run_dir`) once it is known to be a run folder of this
    kind, before anything is written: resuming a folder still being trained stops here.
    ``get_algorithm(name)`` is the algorithm registry's lookup. With ``budget``, the run's
    ``budget_field`` (``total_steps``, ``updates``) is extended to it and config.json rewritten.
    """
    saved = read_run_config(run_dir, kind)
    lock = lock_run_dir(run_dir)
    values = dict(saved["config"])
    if budget is not None:
        values[budget_field] = budget
    cfg = build_config(get_algorithm(saved["algo"]).Config, values)
    if budget is not None:
        write_run_config(run_dir, dict(saved, config=cfg.to_dict()))
    return saved, cfg, lock


class RunLock:
    """The exclusive OS lock (``flock``) on a run folder's ``.lock``, held by the one process writing it.

    The OS drops it when the process ends, however it ends: a killed writer never blocks the next.
    """

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir, self.fd = run_dir, fd

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            release(self.fd)
            self.fd = -1


#: The run folder this process writes (set when it is locked): the folder an interrupted
#: ``policygrad train`` without ``--out`` names in its resume hint.
written_run_dir: Path | None = None


def lock_run_dir(run_dir: Path) -> RunLock:
    """Take ``run_dir`` for writing (creating it), or a one-line error naming the process that holds it.

    Then remove what killed writers left: temporary checkpoint folders and temporary files.
    ``eval`` and ``sample`` read without the lock (every file is replaced atomically).
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = take_exclusive(
            run_dir / LOCK_FILE,
            lambda holder: (
                f"{run_dir} is being written by another policygrad process (PID {holder}); "
                "wait for it to end or stop it, or choose another folder"
            ),
        )
    except OSError as err:
        raise PolicygradError(f"cannot write the run folder {run_dir} ({err.strerror or err})") from None
    clean_temporaries(run_dir)
    global written_run_dir
    written_run_dir = run_dir
    return RunLock(run_dir, fd)


def clean_temporaries(run_dir: Path) -> list[Path]:
    """Remove temporary checkpoint folders and files left by a writer killed mid-write; returns them."""
    removed = []
    for folder in (run_dir, run_dir / CHECKPOINT_DIR):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".tmp_update_") and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif path.name.startswith(TEMPORARY_PREFIXES) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def write_run_config(run_dir: Path, saved: dict[str, Any]) -> None:
    """Write ``config.json`` atomically (``saved`` holds ``algo``, ``config`` and what the kind adds)."""
    write_atomic(Path(run_dir) / CONFIG_FILE, json.dumps(saved, indent=2).encode())


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` atomically; returns its path."""
    path = Path(run_dir) / SUMMARY_FILE
    write_atomic(path, json.dumps(summary, indent=2).encode())
    return path


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB (for the summary)."""
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / scale


class RunInterrupted(PolicygradError):
    """SIGINT or SIGTERM stopped training after a checkpoint; ``exit_code`` is 128 + the signal's number."""

    def __init__(self, run_dir: Path, update: int, signum: int, kind: RunKind = "gym") -> None:
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name} after update {update}, which is checkpointed; continue with: "
            f"{_RESUME[kind]} {run_dir}"
        )
        self.exit_code = 128 + signum


@contextlib.contextmanager
def stop_signals() -> Iterator[list[int]]:
    """While inside, SIGINT and SIGTERM only note their number in the yielded list (a second one interrupts).

    The training loop checks the list after each update, checkpoints and raises :class:`RunInterrupted`.
    Off the main thread (a training page of the lab) signals are left alone.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(signum: int, frame: Any) -> None:
        if received:  # asked twice: stop now, without a checkpoint
            raise KeyboardInterrupt
        received.append(signum)

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def non_finite_error(err: NonFiniteLossError, update: int, last_saved: int, advice: str) -> PolicygradError:
    """The one-line error for a loss that became NaN or inf in ``update`` (what to do: ``advice``)."""
    return PolicygradError(
        f"update {update}: {err}; training stopped and the last good checkpoint (update "
        f"{last_saved}) is kept — {advice}, then resume"
    )


__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "SUMMARY_FILE",
    "RunInterrupted",
    "RunKind",
    "RunLock",
    "check_new_run_dir",
    "clean_temporaries",
    "default_run_dir",
    "holds_run",
    "lock_run_dir",
    "non_finite_error",
    "peak_rss_mb",
    "read_run_config",
    "run_kind",
    "stop_signals",
    "write_run_config",
    "write_summary",
]
