"""policygrad: policy-gradient reinforcement learning, REINFORCE to PPO as one chain.

Public API::

    import policygrad
    agent, history = policygrad.train("ppo", "CartPole-v1", total_steps=50_000)
    agent = policygrad.load("runs/ppo-CartPole-v1-seed0")
    action = agent.act(observation)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from policygrad.agent import Agent


def train(algo: str, env_id: str = "CartPole-v1", **kwargs: Any) -> tuple[Agent, list[dict[str, Any]]]:
    """Train an algorithm on a Gymnasium env; see :func:`policygrad.trainer.train`."""
    from policygrad.trainer import train as _train

    return _train(algo, env_id, **kwargs)


def load(run_dir: str) -> Agent:
    """Load the agent of a run folder's newest checkpoint."""
    from policygrad.trainer import load as _load

    return _load(run_dir)


def evaluate(run_dir: str, episodes: int = 10, seed: int = 0) -> dict[str, Any]:
    """Deterministic evaluation of a run folder: mean, std and every return."""
    from policygrad.evaluation import evaluate_run

    return evaluate_run(run_dir, episodes, seed)


# sweep, report and tune spell out their implementations' signatures (tests/test_sweep.py checks they
# match) so that help() and type checkers see them, while `import policygrad` stays free of torch.
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
    quiet: bool = True,
) -> dict[str, Any]:
    """Train ``algo`` on ``env_id`` over ``seeds`` × the settings of ``grid``, in parallel, into ``out``.

    One run folder per (setting, seed); ``resume=True`` continues a killed sweep (finished
    runs kept, interrupted ones resumed exactly). ``backend="ray"`` runs each as a Ray task.
    Returns ``{"dir", "runs", "finished", "failed"}``; see :func:`policygrad.sweeps.sweep`.
    """
    from policygrad.sweeps import sweep as run_sweep

    return run_sweep(
        algo,
        env_id,
        out=out,
        seeds=seeds,
        grid=grid,
        steps=steps,
        workers=workers,
        backend=backend,
        ray_address=ray_address,
        resume=resume,
        quiet=quiet,
    )


def report(
    sweep_dirs: Sequence[str | Path] | str | Path,
    *,
    out: str | Path | None = None,
    target: float | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per setting of the sweeps: mean, median and IQM of the final returns with 95 % bootstrap CIs (rliable).

    Writes report.md, report.json and learning_curves.png into ``out`` (default: the first
    sweep folder) and returns the JSON as a dict; see :func:`policygrad.reports.report`.
    """
    from policygrad.reports import report as make_report

    return make_report(sweep_dirs, out=out, target=target, reps=reps, seed=seed)


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
    """Search hyperparameters with Optuna (TPE, median pruning), or continue the study in ``out``.

    Writes the best trial as a preset, ``out/best.toml``, for ``policygrad train ALGO ENV
    --preset FILE``; returns ``{"trial", "value", "params", "preset", "run_dir"}``; see
    :func:`policygrad.tuner.tune`.
    """
    from policygrad.tuner import tune as run_tune

    return run_tune(
        algo,
        env_id,
        out=out,
        trials=trials,
        steps=steps,
        timeout=timeout,
        workers=workers,
        storage=storage,
        seed=seed,
        evaluations=evaluations,
        quiet=quiet,
    )


def algorithms() -> list[str]:
    """Names of the algorithms of the chain, in order."""
    from policygrad.algorithms import ALGORITHMS

    return list(ALGORITHMS)


__all__ = ["train", "load", "evaluate", "sweep", "report", "tune", "algorithms", "__version__"]
