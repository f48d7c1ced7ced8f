"""Bandit page model: four arms A–D, one click = one pull = one policy-gradient step.

Each pull moves the logits by θ ← θ + α ∇log π(a)·R. The step is computed by the
library: the pull becomes a one-step episode, :func:`policygrad.exact.episodes_to_rollout`
turns it into a Rollout, ``gae`` (λ = 1, V ≡ 0) gives A = R and ``policy_gradient_loss``
with autograd gives ∇log π(a)·R. For a softmax ∇log π(a) = e_a − π, so a positive reward
raises π(a) and a negative one lowers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from policygrad.errors import PolicygradError
from policygrad.exact import bandit, episodes_to_rollout, per_episode_gradients, sample_episodes
from policygrad.exact.sampling import Episodes
from policygrad.lab import inputs

ARMS = ("A", "B", "C", "D")
#: Hidden expected rewards; each pull adds N(0, 1) noise, so any arm can pay a negative reward.
HIDDEN_MEANS = (0.3, -0.4, 1.0, -0.1)
REWARD_STD = 1.0
DEFAULT_LEARNING_RATE = 0.1
#: "Let the policy sample N steps": at most this many pulls per click.
MAX_SAMPLE_STEPS = 5_000


@dataclass(frozen=True)
class Pull:
    """One pull: which arm, who chose it, the reward, and π after the update."""

    step: int
    arm: int
    reward: float
    chosen_by: str  # "you" or "policy"
    probs_after: tuple[float, ...]


@dataclass
class BanditLab:
    """The state of the Bandit page: logits θ (1, 4), the pulls so far, a seeded generator."""

    learning_rate: float = DEFAULT_LEARNING_RATE
    seed: int = 0
    means: tuple[float, ...] = HIDDEN_MEANS
    theta: np.ndarray = field(init=False)
    history: list[Pull] = field(init=False)

    def __post_init__(self) -> None:
        self.mdp = bandit(list(self.means), noise="gaussian", std=REWARD_STD, action_names=list(ARMS))
        self.reset()

    def reset(self) -> None:
        """Back to θ = 0 (25 % each), an empty history and the initial random stream."""
        self.theta = self.mdp.zeros()
        self.history = []
        self.generator = torch.Generator().manual_seed(self.seed)

    @property
    def probabilities(self) -> np.ndarray:
        """π(a) for A–D, shape (4,)."""
        return self.mdp.policy(self.theta)[0]

    @property
    def expected_reward(self) -> float:
        """J(θ) = Σ_a π(a) · mean(a), exact."""
        return self.mdp.objective(self.theta)

    def set_learning_rate(self, value: float) -> float:
        """Change α (checked: finite, > 0, not absurd); returns it."""
        self.learning_rate = inputs.learning_rate(value)
        return self.learning_rate

    def pull(self, arm: int) -> Pull:
        """You pull ``arm``: draw its reward, take one step, record it."""
        if not 0 <= arm < len(self.means):
            raise PolicygradError(f"arm must be one of {', '.join(ARMS)}")
        noise = torch.randn(1, generator=self.generator, dtype=torch.float64).item()
        reward = float(self.means[arm]) + REWARD_STD * noise
        return self._update(Episodes.one_pull(arm, reward), "you")

    def sample(self, steps: int, on_progress: Callable[[int, int], None] | None = None) -> list[Pull]:
        """The policy pulls ``steps`` arms itself (a ~ π), updating after each pull."""
        steps = inputs.count(steps, "number of steps", MAX_SAMPLE_STEPS)
        pulls = []
        for i in range(steps):
            episodes = sample_episodes(self.mdp, self.theta, 1, max_steps=2, seed=self.generator)
            pulls.append(self._update(episodes, "policy"))
            if on_progress is not None and (i + 1) % 50 == 0:
                on_progress(i + 1, steps)
        return pulls

    def _update(self, episodes: Episodes, chosen_by: str) -> Pull:
        # θ ← θ + α ∇log π(a)·R: the library's rollout, gae (λ = 1, V ≡ 0) and policy-gradient loss.
        rollout = episodes_to_rollout(self.mdp, self.theta, episodes, critic=None)
        gradient = per_episode_gradients(self.theta, rollout, gamma=1.0, lam=1.0)[0].numpy()
        self.theta = self.theta + self.learning_rate * gradient
        pull = Pull(
            step=len(self.history) + 1,
            arm=int(episodes.actions[0, 0]),
            reward=float(episodes.rewards[0, 0]),
            chosen_by=chosen_by,
            probs_after=tuple(float(p) for p in self.probabilities),
        )
        self.history.append(pull)
        return pull

    def counts(self) -> np.ndarray:
        """Pulls per arm, shape (4,)."""
        return np.bincount([p.arm for p in self.history], minlength=len(self.means))

    def average_rewards(self) -> list[float | None]:
        """Mean observed reward per arm (None for an arm never pulled)."""
        out: list[float | None] = []
        for arm in range(len(self.means)):
            rewards = [p.reward for p in self.history if p.arm == arm]
            out.append(float(np.mean(rewards)) if rewards else None)
        return out
