"""policygrad: policy-gradient reinforcement learning, REINFORCE to PPO as one chain.

Public API::

    import policygrad
    agent, history = policygrad.train("ppo", "CartPole-v1", total_steps=50_000)
    agent = policygrad.load("runs/ppo-CartPole-v1-seed0")
    action = agent.act(observation)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from policygrad.agent import Agent
    from policygrad.reports import report
    from policygrad.sweeps import sweep
    from policygrad.tuner import tune

#: Public functions whose modules load heavy dependencies, imported when first used (see __getattr__).
LAZY_API = {"sweep": "policygrad.sweeps", "report": "policygrad.reports", "tune": "policygrad.tuner"}


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


def __getattr__(name: str) -> Any:
    """``policygrad.sweep``, ``report`` and ``tune``: the implementations themselves, imported on first use.

    Lazy (PEP 562) so that ``import policygrad`` stays free of torch, Optuna and rliable, while
    ``help()`` and type checkers (through the imports above) see the real signatures.
    """
    if name in LAZY_API:
        return getattr(importlib.import_module(LAZY_API[name]), name)
    raise AttributeError(f"module 'policygrad' has no attribute {name!r}")


def algorithms() -> list[str]:
    """Names of the algorithms of the chain, in order."""
    from policygrad.algorithms import ALGORITHMS

    return list(ALGORITHMS)


__all__ = ["train", "load", "evaluate", "sweep", "report", "tune", "algorithms", "__version__"]
