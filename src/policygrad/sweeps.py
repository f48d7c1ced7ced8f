"""Sweeps: one algorithm on one environment over many seeds and a grid of settings, in parallel.

``policygrad sweep a2c CartPole-v1 --seeds 0-9 --set learning_rate=1e-3,3e-3 --out DIR``
plans one run per (setting, seed), writes the plan to ``DIR/sweep.json`` and trains each run
in its own worker process (one per core by default) into ``DIR/<setting>/seed<k>/``, an
ordinary run folder of ``policygrad train``. A run whose ``summary.json`` exists is finished;
one with a checkpoint resumes from it exactly (:meth:`policygrad.trainer.Trainer.resume`);
any other starts afresh. So a sweep killed at any instant, even the parent with SIGKILL
(its workers die with it, see :mod:`policygrad.processes`), continues with
``policygrad sweep --resume DIR`` to the same numbers an uninterrupted sweep gives.
"""

from __future__ import annotations

import itertools
import json
import queue as queue_lib
import re
import shutil
import sys
import time
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from policygrad.checkpoint import checkpoint_dirs, write_atomic
from policygrad.errors import PolicygradError
from policygrad.processes import FolderLock, default_workers, die_with_parent, worker_context
from policygrad.runs import SUMMARY_FILE

PLAN_FILE = "sweep.json"
PLAN_FORMAT = "policygrad-sweep/1"
#: Seconds between two progress messages of one worker (evaluations are always sent).
PROGRESS_INTERVAL = 0.25


def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,3,7"`` or ``"0-4,10"`` → the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise PolicygradError(f"--seeds expects seeds like 0-9 or 0,3,7 (got {text!r})")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low:
            raise PolicygradError(f"--seeds range {part} is empty; write it low-high, e.g. 0-9")
        seeds += [s for s in range(low, high + 1) if s not in seeds]
    return seeds


def parse_grid(algo: str, pairs: Sequence[str]) -> dict[str, list[str]]:
    """``--set key=v1,v2`` strings → ``{key: [v1, v2]}``.

    Values are separated by commas; a field whose value itself holds commas
    (``hidden_sizes``) separates its values with ``/``: ``hidden_sizes=64,64/256,256``.
    """
    from policygrad.algorithms import get_algorithm

    hints = typing.get_type_hints(get_algorithm(algo).Config)
    grid: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise PolicygradError(f"--set expects key=value or key=v1,v2,… (got {pair!r})")
        if "/" in raw or "tuple" in str(hints.get(key, "")):
            values = raw.split("/")
        else:
            values = raw.split(",")
        values = [v.strip() for v in values]
        if any(v == "" for v in values):
            raise PolicygradError(f"--set {pair!r} has an empty value")
        grid[key] = values
    return grid


def setting_name(overrides: Mapping[str, Any]) -> str:
    """A folder name for one setting: ``learning_rate=1e-3,gamma=0.99`` (``default`` for none)."""
    if not overrides:
        return "default"
    parts = []
    for key, value in overrides.items():
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        parts.append(f"{key}={re.sub(r'[^A-Za-z0-9._+-]', 'x', text)}")
    return ",".join(parts)


def seed_list(seeds: Iterable[int] | str) -> list[int]:
    """Seeds given as text (``0-9``, ``0,3,7``) or as numbers, as a list."""
    return parse_seeds(seeds) if isinstance(seeds, str) else list(seeds)


def plan_sweep(
    algo: str,
    env_id: str,
    seeds: Iterable[int],
    grid: Mapping[str, Sequence[Any]] | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """The plan of a sweep (what ``sweep.json`` holds); every setting is checked before anything runs.

    ``grid`` maps config fields to the values to try; the settings are their product, named
    by the fields with more than one value (fields with one value apply to every run).
    """
    from policygrad.trainer import resolve_config

    seeds = list(seeds)
    if not seeds:
        raise PolicygradError("a sweep needs at least one seed (--seeds 0-9)")
    grid = {key: list(v) if isinstance(v, (list, tuple)) else [v] for key, v in (grid or {}).items()}
    for key in ("seed", "total_steps"):
        if key in grid:
            raise PolicygradError(f"set {key} with --{'seeds' if key == 'seed' else 'steps'}, not --set")
    if steps is not None and steps <= 0:
        raise PolicygradError(f"--steps must be positive (got {steps})")
    varied = [key for key, values in grid.items() if len(values) > 1]
    settings = []
    for combo in itertools.product(*grid.values()):
        overrides = dict(zip(grid, combo, strict=True))
        name = setting_name({key: overrides[key] for key in varied})
        if any(s["name"] == name for s in settings):
            raise PolicygradError(f"two settings of the grid are both named {name!r}; give each value once")
        values = dict(overrides, seed=seeds[0], **({"total_steps": steps} if steps else {}))
        resolve_config(algo, env_id, values)  # a bad field or value fails here, in one line
        settings.append({"name": name, "overrides": overrides})
    return {
        "format": PLAN_FORMAT,
        "algo": algo,
        "env_id": env_id,
        "seeds": seeds,
        "steps": steps,
        "grid": grid,
        "settings": settings,
        "runs": planned_runs(settings, seeds),
    }


def planned_runs(settings: list[dict[str, Any]], seeds: Iterable[int]) -> list[dict[str, Any]]:
    """One run per (setting, seed), setting by setting, each in ``<setting>/seed<k>``."""
    return [{"setting": s["name"], "seed": seed, "dir": f"{s['name']}/seed{seed}"} for s in settings for seed in seeds]


def widen_plan(plan: dict[str, Any], seeds: Iterable[int]) -> dict[str, Any]:
    """``plan`` with a run of every setting for each of ``seeds`` it lacks (planned runs unchanged)."""
    new_seeds = [seed for seed in dict.fromkeys(seeds) if seed not in plan["seeds"]]
    return dict(plan, seeds=plan["seeds"] + new_seeds, runs=plan["runs"] + planned_runs(plan["settings"], new_seeds))


def read_plan(sweep_dir: Path) -> dict[str, Any]:
    """``DIR/sweep.json``, or a one-line error saying what ``DIR`` is instead."""
    path = Path(sweep_dir) / PLAN_FILE
    if not path.is_file():
        raise PolicygradError(f"{sweep_dir} is not a sweep folder (no {PLAN_FILE}; start one with policygrad sweep)")
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PolicygradError(f"{path} is corrupt ({err})") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise PolicygradError(f"{path} is not a policygrad sweep plan")
    return plan


def run_status(run_dir: Path) -> str:
    """``finished`` (summary written), ``interrupted`` (a checkpoint to resume) or ``pending``."""
    if (run_dir / SUMMARY_FILE).is_file():
        return "finished"
    if run_dir.is_dir() and checkpoint_dirs(run_dir):
        return "interrupted"
    return "pending"


def train_run(algo: str, env_id: str, overrides: Mapping[str, Any], run_dir: Path, on_update: Any = None) -> None:
    """Bring one run folder to its end: nothing if finished, resume if interrupted, else a new run."""
    with FolderLock(run_dir, "run folder", wait=10.0, lock_file=run_dir.parent / f".{run_dir.name}.lock"):
        _train_run(algo, env_id, overrides, run_dir, on_update)


def _train_run(algo: str, env_id: str, overrides: Mapping[str, Any], run_dir: Path, on_update: Any) -> None:
    from policygrad.trainer import Trainer, resolve_config

    status = run_status(run_dir)
    if status == "finished":
        return
    if status == "interrupted":
        trainer = Trainer.resume(run_dir, quiet=True)
    else:
        if run_dir.exists():  # started but killed before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
        cfg, preset_used = resolve_config(algo, env_id, dict(overrides))
        trainer = Trainer.new(algo, cfg, run_dir, preset_used, quiet=True)
    trainer.run(on_update=on_update)


def progress_reporter(index: int, messages: Any) -> Any:
    """The ``on_update`` of run ``index``: ``(index, "progress", (env_step, eval))`` to ``messages``.

    Every evaluation is sent, other updates at most every :data:`PROGRESS_INTERVAL` seconds.
    """
    last = 0.0

    def report(row: dict[str, Any]) -> None:
        nonlocal last
        now = time.monotonic()
        if row.get("eval_return_mean") is not None or now - last >= PROGRESS_INTERVAL:
            last = now
            messages.put((index, "progress", (row["env_step"], row.get("eval_return_mean"))))

    return report


def train_reporting(index: int, algo: str, env_id: str, overrides: dict[str, Any], run_dir: str, messages: Any) -> None:
    """Train run ``index`` of a sweep into ``run_dir``, its progress sent to ``messages``: every worker's body."""
    train_run(algo, env_id, overrides, Path(run_dir), progress_reporter(index, messages))


def _worker(index: int, algo: str, env_id: str, overrides: dict[str, Any], run_dir: str, messages: Any) -> None:
    """A worker process: train one run, sending ``(index, kind, payload)`` messages to the parent."""
    die_with_parent()
    try:
        train_reporting(index, algo, env_id, overrides, run_dir, messages)
    except PolicygradError as err:
        messages.put((index, "failed", str(err)))
        sys.exit(1)
    except Exception as err:  # noqa: BLE001 - reported as the run's one-line failure
        messages.put((index, "failed", f"{type(err).__name__}: {err}"))
        sys.exit(1)


class ProcessPool:
    """Runs as local worker processes (the ``local`` backend); :mod:`policygrad.distributed.ray_sweep` has Ray's.

    Both give the sweep loop the same four things: ``messages`` (a queue of the workers'
    ``(index, kind, payload)``), ``start`` a run, ``reap`` the ended ones as
    ``(index, error or None)``, and ``stop`` every run still going.
    """

    def __init__(self) -> None:
        self.ctx = worker_context()
        self.messages = self.ctx.Queue()
        self.active: dict[int, Any] = {}

    def start(self, index: int, algo: str, env_id: str, values: dict[str, Any], run_dir: Path) -> None:
        args = (index, algo, env_id, values, str(run_dir), self.messages)
        self.active[index] = self.ctx.Process(target=_worker, args=args, name=f"policygrad-sweep-{index}")
        self.active[index].start()

    def reap(self) -> list[tuple[int, str | None]]:
        ended = []
        for index, process in list(self.active.items()):
            if process.exitcode is None:
                continue
            process.join()
            del self.active[index]
            ended.append((index, None if process.exitcode == 0 else f"worker exited with status {process.exitcode}"))
        return ended

    def stop(self) -> None:
        for process in self.active.values():  # the runs keep their last checkpoint; --resume continues them
            process.kill()
            process.join()
        self.active.clear()

    def default_workers(self) -> int:
        return default_workers()

    def close(self) -> None:
        """Nothing to release: the worker processes have ended."""


def sweep(
    algo: str | None = None,
    env_id: str | None = None,
    *,
    out: str | Path,
    seeds: Iterable[int] | str = range(10),
    grid: Mapping[str, Sequence[Any]] | None = None,
    steps: int | None = None,
    workers: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    resume: bool = False,
    add_seeds: Iterable[int] | str | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Run (or, with ``resume=True``, continue) a sweep into ``out``; returns its status.

    ``add_seeds`` (with ``resume=True``) widens the plan: every setting gains a run for each
    seed it does not have yet, and the finished runs are kept, so a 3-seed sweep becomes a
    5-seed one by training only the two new runs.

    ``backend="local"`` trains ``workers`` runs at a time in worker processes here (default
    one per core); ``backend="ray"`` runs each as a Ray task, ``workers`` at a time (default:
    as many as the cluster has CPUs), on the cluster at ``ray_address`` (or ``RAY_ADDRESS``),
    else on a private local Ray that the sweep starts and stops. Either backend gives the
    same numbers, and a sweep started on one may be resumed on the other.

    The status maps ``finished``, ``failed`` (run name → error) and ``runs`` (the plan's runs).
    Failed runs raise a :class:`PolicygradError` after every other run has ended.
    """
    if backend not in ("local", "ray"):
        raise PolicygradError(f"--backend must be local or ray (got {backend!r})")
    if workers is not None and workers <= 0:
        raise PolicygradError(f"--workers must be positive (got {workers})")
    sweep_dir = Path(out).resolve()  # absolute: Ray tasks may start in another directory
    with FolderLock(sweep_dir, "sweep folder"):
        if resume:
            plan = read_plan(sweep_dir)
            widened = add_seeds is not None
            if widened:
                plan = widen_plan(plan, seed_list(add_seeds))
        else:
            widened = False
            if algo is None or env_id is None:
                raise PolicygradError("name the algorithm and environment: policygrad sweep ALGO ENV_ID --out DIR")
            if (sweep_dir / PLAN_FILE).exists():
                raise PolicygradError(
                    f"{out} already holds a sweep; continue it with 'policygrad sweep --resume {out}'"
                )
            plan = plan_sweep(algo, env_id, seed_list(seeds), grid, steps)
        if backend == "ray":
            from policygrad.distributed.ray_sweep import RayTaskPool  # Ray is entered only here

            pool: Any = RayTaskPool(train_reporting, ray_address)
        else:
            pool = ProcessPool()
        try:
            # written once the backend is up: a cluster out of reach leaves no half-started sweep
            if not resume or widened:
                write_atomic(sweep_dir / PLAN_FILE, json.dumps(plan, indent=2).encode())
            return _execute(plan, sweep_dir, Path(out), workers or pool.default_workers(), quiet, pool)
        finally:
            pool.close()


def _execute(
    plan: dict[str, Any], sweep_dir: Path, shown: Path, workers: int, quiet: bool, pool: Any
) -> dict[str, Any]:
    from policygrad.sweep_view import SweepView

    runs = plan["runs"]
    overrides = {s["name"]: s["overrides"] for s in plan["settings"]}
    budget = {"total_steps": plan["steps"]} if plan.get("steps") else {}
    failed: dict[str, str] = {}
    pending = []
    with SweepView(plan, sweep_dir, quiet) as view:
        for index, run in enumerate(runs):
            if run_status(sweep_dir / run["dir"]) == "finished":
                view.finished(index)
            else:
                pending.append(index)
        try:
            while pending or pool.active:
                while pending and len(pool.active) < workers:
                    index = pending.pop(0)
                    run = runs[index]
                    values = dict(overrides[run["setting"]], seed=run["seed"], **budget)
                    pool.start(index, plan["algo"], plan["env_id"], values, sweep_dir / run["dir"])
                    view.started(index)
                _drain(pool.messages, view, failed, runs)
                for index, error in pool.reap():
                    _drain(pool.messages, view, failed, runs)
                    if error is None and run_status(sweep_dir / runs[index]["dir"]) == "finished":
                        view.finished(index)
                    else:
                        failed.setdefault(runs[index]["dir"], error or "the run ended without its summary")
                        view.failed(index)
        except BaseException:
            pool.stop()  # the runs keep their last checkpoint; --resume continues them
            raise
    finished = sum(run_status(sweep_dir / run["dir"]) == "finished" for run in runs)
    if failed:
        first, error = next(iter(failed.items()))
        raise PolicygradError(
            f"{len(failed)} of {len(runs)} runs failed (first, {shown / first}: {error}); "
            f"fix the cause and continue with 'policygrad sweep --resume {shown}'"
        )
    return {"dir": str(shown), "runs": runs, "finished": finished, "failed": failed}


def _drain(messages: Any, view: Any, failed: dict[str, str], runs: list[dict[str, Any]]) -> None:
    """Apply every message the workers sent so far (waiting a moment for the first)."""
    timeout = 0.1
    while True:
        try:
            index, kind, payload = messages.get(timeout=timeout)
        except queue_lib.Empty:
            return
        timeout = 0.0
        if kind == "progress":
            view.advance(index, *payload)
        elif kind == "failed":
            failed[runs[index]["dir"]] = payload


__all__ = ["PLAN_FILE", "ProcessPool", "parse_grid", "parse_seeds", "plan_sweep", "progress_reporter", "read_plan"]
__all__ += ["run_status", "sweep", "train_reporting", "train_run"]
