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


def algorithms() -> list[str]:
    """Names of the algorithms of the chain, in order."""
    from policygrad.algorithms import ALGORITHMS

    return list(ALGORITHMS)


__all__ = ["train", "load", "evaluate", "algorithms", "__version__"]
