"""policygrad: policy-gradient reinforcement learning, REINFORCE to PPO as one chain.

Public API::

    import policygrad
    agent, history = policygrad.train("ppo", "CartPole-v1", total_steps=50_000)
    agent = policygrad.load("runs/ppo-CartPole-v1-seed0")
    action = agent.act(observation)
"""

from __future__ import annotations

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


def sweep(algo: str | None = None, env_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train over seeds and a grid of settings in parallel; see :func:`policygrad.sweeps.sweep`."""
    from policygrad.sweeps import sweep as _sweep

    return _sweep(algo, env_id, **kwargs)


def report(sweep_dirs: Any, **kwargs: Any) -> dict[str, Any]:
    """IQM, mean and median with bootstrap CIs of sweep folders; see :func:`policygrad.reports.report`."""
    from policygrad.reports import report as _report

    return _report(sweep_dirs, **kwargs)


def tune(algo: str, env_id: str, **kwargs: Any) -> dict[str, Any]:
    """Search hyperparameters with Optuna and write the best as a preset; see :func:`policygrad.tuner.tune`."""
    from policygrad.tuner import tune as _tune

    return _tune(algo, env_id, **kwargs)


def algorithms() -> list[str]:
    """Names of the algorithms of the chain, in order."""
    from policygrad.algorithms import ALGORITHMS

    return list(ALGORITHMS)


__all__ = ["train", "load", "evaluate", "sweep", "report", "tune", "algorithms", "__version__"]
