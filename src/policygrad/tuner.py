"""Hyperparameter search with Optuna: TPE sampling, median pruning on the periodic evaluations.

``policygrad tune a2c CartPole-v1 --trials 50 --out DIR`` keeps its study in a real database,
``DIR/study.db`` (SQLite) unless ``--storage URL`` names another, so running the same command
again continues it, and several processes or machines can share one study. Each trial is an
ordinary run folder ``DIR/trials/trial-NNNN`` trained by :class:`policygrad.trainer.Trainer`;
its deterministic evaluations (every ``total_steps / evaluations`` env steps) reach Optuna
through the trainer's ``on_update`` callback, and the median pruner stops a trial whose
evaluation falls below the median of earlier trials at the same step. The search spaces are
data (``policygrad/tuning/<algo>.toml``), after the RL zoo's ranges. The best trial becomes a
preset file, ``DIR/best.toml``, that ``policygrad train ALGO ENV --preset DIR/best.toml`` uses.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

from policygrad.checkpoint import write_atomic
from policygrad.errors import PolicygradError
from policygrad.processes import FolderLock, default_workers, die_with_parent, worker_context

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STUDY_FILE = "study.db"
PLAN_FILE = "tune.json"
BEST_PRESET = "best.toml"
#: Trials sampled at random before TPE models the search space, and before the pruner may prune.
STARTUP_TRIALS = 5


def load_space(algo: str) -> dict[str, dict[str, Any]]:
    """The search space of ``algo``: field name → ``{type, low, high, log}`` or ``{type, choices}``."""
    root = resources.files("policygrad") / "tuning"
    path = root / f"{algo}.toml"
    if not path.is_file():
        known = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))
        raise PolicygradError(f"no search space for '{algo}' (policygrad/tuning/ has: {', '.join(known)})")
    return tomllib.loads(path.read_text())


def sample(trial: Any, space: dict[str, dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """One point of ``space`` from an Optuna trial; ``base`` (the config without it) fills ``at_most_product_of``."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec.get("type")
        if kind == "float":
            values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "int":
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "categorical":
            values[name] = trial.suggest_categorical(name, spec["choices"])
        else:
            raise PolicygradError(f"search space field {name}: type must be float, int or categorical (got {kind!r})")
    for name, spec in space.items():
        if "at_most_product_of" in spec:
            cap = math.prod(int(values.get(f, base.get(f, 1))) for f in spec["at_most_product_of"])
            values[name] = min(values[name], cap)
    return values


def toml_preset(values: dict[str, Any], header: str) -> str:
    """``values`` as a preset file (TOML); None values are left out (TOML has no null)."""

    def literal(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(literal(v) for v in value) + "]"
        if isinstance(value, (int, float)):
            return repr(value)
        return json.dumps(str(value))

    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{key} = {literal(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise PolicygradError("policygrad tune needs Optuna: pip install 'policygrad[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _storage(url: str) -> Any:
    optuna = _optuna()
    try:  # a heartbeat lets a shared study fail the trials of a machine that died
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120)
    except Exception as err:  # noqa: BLE001 - any database error becomes one line
        raise PolicygradError(f"cannot open the study storage {url}: {err}") from None


def _objective(plan: dict[str, Any], out: Path) -> Any:
    optuna = _optuna()
    from policygrad.trainer import Trainer, resolve_config

    space = load_space(plan["algo"])
    base = resolve_config(plan["algo"], plan["env_id"], {})[0].to_dict()

    def objective(trial: Any) -> float:
        params = sample(trial, space, base)
        total = plan["steps"] or base["total_steps"]
        overrides = dict(params, seed=plan["seed"], total_steps=total, eval_every=max(1, total // plan["evaluations"]))
        cfg, preset_used = resolve_config(plan["algo"], plan["env_id"], overrides)
        run_dir = out / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trainer = Trainer.new(plan["algo"], cfg, run_dir, preset_used, quiet=True)
        pruned = False

        def on_update(row: dict[str, Any]) -> bool:
            nonlocal pruned
            if row.get("eval_return_mean") is not None:
                trial.report(row["eval_return_mean"], row["env_step"])
                pruned = trial.should_prune()
            return pruned

        trainer.run(on_update)
        if pruned:
            raise optuna.TrialPruned()
        return float(trainer.counters["last_eval"])

    return objective


def _finished(study: Any) -> list[Any]:
    states = _optuna().trial.TrialState
    return study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))


def _optimize(plan: dict[str, Any], out: str, worker: int, timeout: float | None, on_trial: Any = None) -> None:
    """One worker's share of the study: trials until ``plan['trials']`` have finished (complete or pruned)."""
    optuna = _optuna()
    from optuna.study import MaxTrialsCallback

    storage = _storage(plan["storage"])
    study = optuna.load_study(study_name=plan["study"], storage=storage)
    study.sampler = optuna.samplers.TPESampler(
        n_startup_trials=STARTUP_TRIALS, seed=plan["seed"] + 1000 * worker + len(study.trials)
    )
    study.pruner = optuna.pruners.MedianPruner(
        n_startup_trials=STARTUP_TRIALS, n_warmup_steps=(plan["steps"] or 0) // 3
    )
    if len(_finished(study)) >= plan["trials"]:
        return
    failures = 0

    def stop_on_repeated_failure(study: Any, trial: Any) -> None:
        nonlocal failures
        failures = failures + 1 if trial.state == optuna.trial.TrialState.FAIL else 0
        if failures >= STARTUP_TRIALS:  # a broken setup, not bad luck: stop instead of failing forever
            study.stop()
        if on_trial is not None:
            on_trial(study, trial)

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    study.optimize(
        _objective(plan, Path(out)),
        timeout=timeout,
        catch=(PolicygradError,),
        callbacks=[MaxTrialsCallback(plan["trials"], states=states), stop_on_repeated_failure],
    )


def _worker(plan: dict[str, Any], out: str, worker: int, timeout: float | None) -> None:
    die_with_parent()
    _optimize(plan, out, worker, timeout)


def tune(
    algo: str,
    env_id: str,
    *,
    out: str | Path,
    trials: int = 50,
    steps: int | None = None,
    timeout: float | None = None,
    workers: int | None = 1,
    storage: str | None = None,
    seed: int = 0,
    evaluations: int = 10,
    quiet: bool = True,
) -> dict[str, Any]:
    """Tune ``algo`` on ``env_id`` (or continue the study in ``out``); returns the best trial and preset path.

    ``workers`` processes share the study (``None``: one per core); ``timeout`` seconds bound
    each worker; ``storage`` is any database URL Optuna accepts (default SQLite in ``out``).
    """
    from policygrad.trainer import resolve_config
    from policygrad.tune_view import TuneView

    out_dir = Path(out)
    for name, value in (("--trials", trials), ("--evaluations", evaluations)) + (
        (("--steps", steps),) if steps else ()
    ):
        if value <= 0:
            raise PolicygradError(f"{name} must be positive (got {value})")
    resolve_config(algo, env_id, {"seed": seed, **({"total_steps": steps} if steps else {})})
    load_space(algo)
    workers = workers or default_workers()
    with FolderLock(out_dir, "tuning folder"):
        url = storage or f"sqlite:///{(out_dir / STUDY_FILE).resolve()}"
        plan = {"algo": algo, "env_id": env_id, "steps": steps, "trials": trials, "seed": seed}
        plan.update(evaluations=evaluations, storage=url, study=f"{algo}-{env_id}")
        previous = json.loads((out_dir / PLAN_FILE).read_text()) if (out_dir / PLAN_FILE).is_file() else None
        if previous and (previous["algo"], previous["env_id"]) != (algo, env_id):
            raise PolicygradError(f"{out_dir} tunes {previous['algo']} on {previous['env_id']}; choose another --out")
        write_atomic(out_dir / PLAN_FILE, json.dumps(plan, indent=2).encode())
        optuna = _optuna()
        database = _storage(url)
        study = optuna.create_study(
            study_name=plan["study"], storage=database, direction="maximize", load_if_exists=True
        )
        if storage is None:  # our own database, locked by us: a trial still "running" was killed with us
            study_id = database.get_study_id_from_name(plan["study"])
            for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                trial_id = database.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                database.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        with TuneView(study, trials, quiet) as view:
            if workers == 1:
                _optimize(plan, str(out_dir), 0, timeout, view.trial_done)
            else:
                ctx = worker_context()
                processes = [ctx.Process(target=_worker, args=(plan, str(out_dir), i, timeout)) for i in range(workers)]
                for process in processes:
                    process.start()
                try:
                    while any(p.is_alive() for p in processes):
                        view.refresh()
                        time.sleep(0.5)
                finally:
                    for process in processes:
                        if process.is_alive():
                            process.kill()
                        process.join()
        return _write_best(study, plan, out_dir)


def _write_best(study: Any, plan: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    from policygrad.config import load_preset

    optuna = _optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        reason = failed[-1].system_attrs.get("fail_reason", "") if failed else ""
        raise PolicygradError(f"no trial of {out_dir} completed" + (f" (last failure: {reason})" if reason else ""))
    best = study.best_trial
    values = dict(load_preset(plan["algo"], plan["env_id"]) or {})
    values.update(best.params)
    if plan["steps"]:
        values["total_steps"] = plan["steps"]
    from policygrad.trainer import resolve_config

    as_config = resolve_config(plan["algo"], plan["env_id"], values)[0].to_dict()  # typed: hidden_sizes a list
    values = {key: as_config[key] for key in values}
    header = (
        f"{plan['algo']} on {plan['env_id']}, found by policygrad tune: trial {best.number}, best of "
        f"{len(complete)} complete trials, final evaluation {best.value:.1f}\n"
        f"study {plan['study']} in {plan['storage']}"
    )
    write_atomic(out_dir / BEST_PRESET, toml_preset(values, header).encode())
    result = {"trial": best.number, "value": best.value, "params": best.params, "preset": str(out_dir / BEST_PRESET)}
    result["run_dir"] = best.user_attrs.get("run_dir")
    write_atomic(out_dir / "best.json", json.dumps(result, indent=2).encode())
    return result


__all__ = ["BEST_PRESET", "STUDY_FILE", "load_space", "sample", "toml_preset", "tune"]
