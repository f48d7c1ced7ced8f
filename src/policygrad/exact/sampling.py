"""Sampling episodes of a :class:`TabularMDP` under its softmax policy, vectorised over episodes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.errors import PolicygradError
from policygrad.exact.mdp import ArrayLike, TabularMDP


@dataclass
class Episodes:
    """N sampled episodes, padded to a common length T (``mask`` marks the real steps).

    ===========  ============  ====================================================
    field        shape         meaning
    ===========  ============  ====================================================
    states       (N, T) long   s_t (padding repeats the last state)
    actions      (N, T) long   a_t ~ π(·|s_t)
    rewards      (N, T) f64    r_t, with the MDP's reward noise (0 on padding)
    next_states  (N, T) long   s_{t+1}
    terminated   (N, T) bool   s_{t+1} is terminal
    truncated    (N, T) bool   the episode was cut at ``max_steps`` after this step
    mask         (N, T) bool   the step is real
    ===========  ============  ====================================================
    """

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def one_pull(cls, arm: int, reward: float) -> Episodes:
        """A one-step bandit episode: state 0, ``arm``, ``reward``, then the terminal state."""
        one = torch.tensor([[arm]])
        return cls(
            states=torch.zeros_like(one),
            actions=one,
            rewards=torch.tensor([[reward]], dtype=torch.float64),
            next_states=torch.ones_like(one),
            terminated=torch.ones(1, 1, dtype=torch.bool),
            truncated=torch.zeros(1, 1, dtype=torch.bool),
            mask=torch.ones(1, 1, dtype=torch.bool),
        )

    @property
    def num_episodes(self) -> int:
        return self.states.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """Steps per episode, (N,)."""
        return self.mask.sum(-1)


def _categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of ``probs`` (B, K) by inverse-CDF sampling."""
    uniforms = torch.rand(probs.shape[0], 1, generator=generator, dtype=probs.dtype)
    return (probs.cumsum(-1) <= uniforms).sum(-1).clamp_(max=probs.shape[-1] - 1)


def sample_episodes(
    mdp: TabularMDP,
    theta: ArrayLike,
    num_episodes: int,
    max_steps: int = 1000,
    seed: int | torch.Generator = 0,
) -> Episodes:
    """Play ``num_episodes`` episodes of π_θ from s₀ ~ μ₀ until termination or ``max_steps``.

    ``theta`` is (O, A), or (num_episodes, O, A) to give each episode its own policy.

    ``seed`` is an int or a ``torch.Generator``; the same seed gives the same episodes.
    An episode still running after ``max_steps`` steps is truncated (its last real step
    has ``truncated`` set); choose ``max_steps`` so that this is rare when an estimator
    must be unbiased.
    """
    if num_episodes < 1 or max_steps < 1:
        raise PolicygradError(f"need num_episodes >= 1 and max_steps >= 1, got {num_episodes} and {max_steps}")
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        pi = mdp.policy_t(theta).detach()
    N = num_episodes
    if pi.ndim == 3 and pi.shape[0] != N:
        raise PolicygradError(f"a batch of logits needs one per episode: got {pi.shape[0]} for {N} episodes")
    rows = torch.arange(N)
    states = _categorical(mdp.mu0.expand(N, -1), generator)
    alive = ~mdp.terminal[states]
    columns: dict[str, list[torch.Tensor]] = {k: [] for k in ("s", "a", "r", "s2", "term", "mask")}
    for _ in range(max_steps):
        if not alive.any():
            break
        actions = _categorical(pi[rows, states] if pi.ndim == 3 else pi[states], generator)
        next_states = _categorical(mdp.P[states, actions], generator)
        rewards = mdp.R[states, actions]
        if mdp.reward_noise == "gaussian":
            rewards = rewards + mdp.reward_std * torch.randn(N, generator=generator, dtype=torch.float64)
        elif mdp.reward_noise == "bernoulli":
            rewards = (torch.rand(N, generator=generator, dtype=torch.float64) < rewards).to(torch.float64)
        ended = mdp.terminal[next_states]
        for key, value in (
            ("s", states),
            ("a", actions),
            ("r", torch.where(alive, rewards, 0.0)),
            ("s2", torch.where(alive, next_states, states)),
            ("term", alive & ended),
            ("mask", alive.clone()),
        ):
            columns[key].append(value)
        alive = alive & ~ended
        states = torch.where(alive, next_states, states)
    if not columns["s"]:  # every episode started in a terminal state
        empty = torch.zeros(N, 0, dtype=torch.long)
        return Episodes(empty, empty, empty.double(), empty, empty.bool(), empty.bool(), empty.bool())
    mask = torch.stack(columns["mask"], 1)
    truncated = torch.zeros_like(mask)
    truncated[:, -1] = alive  # still running after the last step: cut by the step limit
    return Episodes(
        states=torch.stack(columns["s"], 1),
        actions=torch.stack(columns["a"], 1),
        rewards=torch.stack(columns["r"], 1),
        next_states=torch.stack(columns["s2"], 1),
        terminated=torch.stack(columns["term"], 1),
        truncated=truncated,
        mask=mask,
    )
