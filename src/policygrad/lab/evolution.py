"""Evolution page model: the chain REINFORCE → + baseline → Actor-Critic → A2C → PPO as data.

What each step adds comes from :data:`policygrad.algorithms.ADDS`, its source from the
installed module (``inspect.getsource``); the equations are written here once, in LaTeX,
beside the lines of each module that implement them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from policygrad.algorithms import ADDS, ALGORITHMS

CHAIN = tuple(ALGORITHMS)  # reinforce, reinforce-baseline, actor-critic, a2c, ppo

TITLES = {
    "reinforce": "REINFORCE",
    "reinforce-baseline": "+ baseline",
    "actor-critic": "Actor-Critic",
    "a2c": "A2C",
    "ppo": "PPO",
}

#: The label on the edge into each step (from the one before it).
EDGE_LABELS = {
    "reinforce-baseline": "+ baseline b(s)",
    "actor-critic": "+ critic network",
    "a2c": "+ parallel sampling",
    "ppo": "+ clipped trust region",
}

#: A note under a node.
NOTES = {"ppo": "core of RLHF"}

EQUATIONS = {
    "reinforce": r"\nabla_\theta J(\theta) \approx \sum_t \nabla_\theta \log \pi_\theta(a_t \mid s_t)\, G_t,"
    r"\qquad G_t = \sum_{k \ge 0} \gamma^k r_{t+k}",
    "reinforce-baseline": r"\sum_t \nabla_\theta \log \pi_\theta(a_t \mid s_t)\,\bigl(G_t - V_\phi(s_t)\bigr),"
    r"\qquad \min_\phi \sum_t \bigl(G_t - V_\phi(s_t)\bigr)^2",
    "actor-critic": r"\delta_t = r_t + \gamma V_\phi(s_{t+1}) - V_\phi(s_t),"
    r"\qquad \sum_t \nabla_\theta \log \pi_\theta(a_t \mid s_t)\, \delta_t",
    "a2c": r"\hat A_t = \sum_{l \ge 0} (\gamma \lambda)^l\, \delta_{t+l}"
    r"\quad \text{over an } (N, T) \text{ rollout of } N \text{ environments}",
    "ppo": r"L^{\mathrm{CLIP}}(\theta) = \mathbb{E}_t\Bigl[\min\bigl(\rho_t \hat A_t,\;"
    r"\operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\, \hat A_t\bigr)\Bigr],"
    r"\qquad \rho_t = \frac{\pi_\theta(a_t \mid s_t)}{\pi_{\theta_\text{old}}(a_t \mid s_t)}",
}


@dataclass(frozen=True)
class Step:
    """One node of the chain."""

    name: str
    title: str
    adds: str
    equation: str
    module: str
    path: str
    source: str
    note: str | None


def step(name: str) -> Step:
    """The node ``name`` with its module's source, read from the installed package."""
    module = ALGORITHMS[name]
    return Step(
        name=name,
        title=TITLES[name],
        adds=ADDS[name],
        equation=EQUATIONS[name],
        module=module.__name__,
        path=inspect.getsourcefile(module) or module.__name__,
        source=inspect.getsource(module),
        note=NOTES.get(name),
    )


def edges() -> list[tuple[str, str, str]]:
    """(from, to, label) for each arrow of the chain."""
    return [(a, b, EDGE_LABELS[b]) for a, b in zip(CHAIN[:-1], CHAIN[1:], strict=True)]
