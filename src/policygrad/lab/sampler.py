"""REINFORCE sampler page model: sampled episodes of a gridworld, their returns G_t, and the exact V(s₀).

Russell & Norvig's 4×3 world (:func:`policygrad.exact.gridworld`: slip 0.2, step reward
−0.04, exits +1 / −1) with γ = 0.9 under the uniform policy. Each sample is one episode
from :func:`policygrad.exact.sample_episodes`; its returns-to-go come from the library's
``returns_to_go`` (``gae`` with λ = 1, V ≡ 0). REINFORCE learns from G₀ as if it were
V(s₀); the exact V(s₀) = J(θ) is a linear solve. The spread of G₀ is the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from policygrad.advantages import returns_to_go
from policygrad.exact import episodes_to_rollout, gridworld, sample_episodes
from policygrad.exact.constructors import GRID_ACTIONS, RUSSELL_NORVIG_LAYOUT
from policygrad.lab import inputs

GAMMA = 0.9
#: An episode still running after this many steps is cut (rare: the mean length is about 15).
MAX_EPISODE_STEPS = 200
MAX_BATCH = 10_000
#: Every G₀ lies in [−1 − 0.04/(1 − γ), 1] = [−1.4, 1]: the histogram's fixed axis.
RETURN_RANGE = (-1.4, 1.0)


def cell_names(layout: tuple[str, ...] = RUSSELL_NORVIG_LAYOUT) -> list[str]:
    """Names of the gridworld's states in the order :func:`policygrad.exact.gridworld` numbers them.

    Russell & Norvig's (column, row) with (1, 1) the bottom-left cell, "+1"/"−1" marking the
    exits, then "end" for the terminal state.
    """
    marks = {"G": " +1", "P": " −1", "S": " start"}
    cells = [(i, j, c) for i, row in enumerate(layout) for j, c in enumerate(row) if c != "#"]
    return [f"({j + 1}, {len(layout) - i}){marks.get(c, '')}" for i, j, c in cells] + ["end"]


@dataclass(frozen=True)
class Step:
    """One step of a sampled episode."""

    t: int
    state: str
    action: str
    reward: float
    return_to_go: float


@dataclass
class SamplerLab:
    """The state of the sampler page: every sampled G₀, and the last episode step by step."""

    seed: int = 0
    returns: list[float] = field(init=False)
    last_episode: list[Step] = field(init=False)

    def __post_init__(self) -> None:
        self.mdp = gridworld(gamma=GAMMA)
        self.theta = self.mdp.zeros()  # the uniform policy
        self.names = cell_names()
        self.reset()

    def reset(self) -> None:
        """Forget every sample; restart the random stream."""
        self.returns = []
        self.last_episode = []
        self.generator = torch.Generator().manual_seed(self.seed)

    @property
    def exact_value(self) -> float:
        """V(s₀) = J(θ) = E[G₀], exact."""
        return self.mdp.objective(self.theta)

    def sample(self, episodes: int = 1) -> list[Step]:
        """Sample ``episodes`` episodes; record every G₀; return the steps of the last one."""
        episodes = inputs.count(episodes, "number of episodes", MAX_BATCH)
        sampled = sample_episodes(self.mdp, self.theta, episodes, MAX_EPISODE_STEPS, seed=self.generator)
        rollout = episodes_to_rollout(self.mdp, self.theta, sampled, critic=None)
        returns = returns_to_go(rollout.rewards, rollout.terminated, rollout.done, GAMMA)  # G_t, (N, T)
        self.returns.extend(returns[:, 0].tolist())
        last = episodes - 1
        self.last_episode = [
            Step(
                t=t,
                state=self.names[int(sampled.states[last, t])],
                action=GRID_ACTIONS[int(sampled.actions[last, t])],
                reward=float(sampled.rewards[last, t]),
                return_to_go=float(returns[last, t]),
            )
            for t in range(int(sampled.mask[last].sum()))
        ]
        return self.last_episode

    def statistics(self) -> dict[str, float]:
        """Count, mean, standard deviation and standard error of the sampled G₀, beside the exact V(s₀)."""
        g0 = np.asarray(self.returns)
        n = len(g0)
        std = float(g0.std(ddof=1)) if n > 1 else float("nan")
        return {
            "episodes": n,
            "mean": float(g0.mean()) if n else float("nan"),
            "std": std,
            "std_error": std / float(np.sqrt(n)) if n > 1 else float("nan"),
            "exact": self.exact_value,
        }
