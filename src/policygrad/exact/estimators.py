r"""The library's policy-gradient estimators, run on tabular episodes and checked against ∇J.

Sampled episodes become a :class:`~policygrad.rollout.Rollout` (one-hot observations),
advantages come from :func:`~policygrad.advantages.gae` and the gradient from
:func:`~policygrad.losses.policy_gradient_loss` and autograd — the same code that trains
CartPole. Only the critic differs between estimators:

====================  ====  =====================  ====================================
estimator             λ     critic V̂               A_t
====================  ====  =====================  ====================================
reinforce             1     0                      G_t
constant-baseline     1     b = J(θ)               G_t − b
exact-baseline        1     V^π                    G_t − V^π(s_t)
learned-baseline      1     fitted on other data   G_t − V̂(s_t)
td-exact              0     V^π                    r_t + γ V^π(s_{t+1}) − V^π(s_t)
gae-exact             0.9   V^π                    GAE(0.9)
td-wrong-critic       0     0 (never trained)      r_t  (biased)
====================  ====  =====================  ====================================

One episode's estimate is (Sutton & Barto 2018, eq. 13.8, with the discount weight γ^t
that makes it unbiased for ∇J when γ < 1)

.. math::

    \hat g = \sum_t γ^t A_t \nabla_θ \log π_θ(a_t | s_t).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from policygrad.advantages import gae
from policygrad.errors import lookup
from policygrad.exact.mdp import ArrayLike, TabularMDP, as_float64
from policygrad.exact.sampling import Episodes, sample_episodes
from policygrad.losses import policy_gradient_loss, value_loss
from policygrad.rollout import Rollout

Critic = Literal["zero", "constant", "exact", "learned", "wrong"]


@dataclass(frozen=True)
class Estimator:
    """One advantage estimate: GAE's λ and where the critic's values come from."""

    lam: float
    critic: Critic
    unbiased: bool
    advantage: str


ESTIMATORS: dict[str, Estimator] = {
    "reinforce": Estimator(1.0, "zero", True, "G_t"),
    "constant-baseline": Estimator(1.0, "constant", True, "G_t − b, b = J(θ)"),
    "exact-baseline": Estimator(1.0, "exact", True, "G_t − V^π(s_t)"),
    "learned-baseline": Estimator(1.0, "learned", True, "G_t − V̂(s_t), V̂ regressed on an independent batch"),
    "td-exact": Estimator(0.0, "exact", True, "r_t + γV^π(s_t+1) − V^π(s_t)"),
    "gae-exact": Estimator(0.9, "exact", True, "GAE(λ = 0.9) with V^π"),
    "td-wrong-critic": Estimator(0.0, "wrong", False, "r_t + γV̂(s_t+1) − V̂(s_t) with V̂ ≡ 0"),
}


def get_estimator(name: str) -> Estimator:
    """The estimator called ``name``, or a clear error."""
    return lookup(name, ESTIMATORS, "estimator")


def episodes_to_rollout(mdp: TabularMDP, theta: ArrayLike, episodes: Episodes, critic: torch.Tensor | None) -> Rollout:
    """The library's Rollout for tabular episodes: one-hot observations (N, T, O), critic values V̂(s_t).

    ``theta`` (O, A) or one policy per episode (N, O, A); ``critic`` (S,), one per episode
    (N, S), or None for V̂ ≡ 0.
    """
    obs = mdp.obs_index[episodes.states]
    with torch.no_grad():
        log_pi = torch.log_softmax(as_float64(theta), dim=-1)
    if log_pi.ndim == 3:  # one policy per episode
        log_pi = log_pi[torch.arange(log_pi.shape[0])[:, None], obs]
        log_pi = log_pi.gather(-1, episodes.actions.unsqueeze(-1)).squeeze(-1)
    else:
        log_pi = log_pi[obs, episodes.actions]
    values, next_values = torch.zeros_like(episodes.rewards), torch.zeros_like(episodes.rewards)
    if critic is not None and critic.ndim == 2:  # one critic per episode
        values, next_values = critic.gather(1, episodes.states), critic.gather(1, episodes.next_states)
    elif critic is not None:
        values, next_values = critic[episodes.states], critic[episodes.next_states]
    mask = episodes.mask
    return Rollout(
        observations=torch.nn.functional.one_hot(obs, mdp.num_observations).to(torch.float64),
        actions=episodes.actions,
        log_probs=log_pi,
        values=values * mask,
        rewards=episodes.rewards,
        terminated=episodes.terminated,
        truncated=episodes.truncated,
        mask=mask,
        next_values=next_values * mask,
    )


def per_episode_gradients(theta: ArrayLike, rollout: Rollout, gamma: float, lam: float) -> torch.Tensor:
    """One policy-gradient estimate per episode (row) of ``rollout``: (N, O, A).

    Advantages by ``gae``; the gradient by ``policy_gradient_loss`` and autograd. Each
    row gets its own copy of θ (or its own logits, if ``theta`` is (N, O, A)), so one
    backward pass yields every per-episode gradient.
    """
    advantages, _ = gae(
        rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, gamma, lam
    )
    N, T = rollout.rewards.shape
    # γ^t: the policy-gradient theorem weighs states by the discounted visitation d^π.
    advantages = advantages * gamma ** torch.arange(T, dtype=torch.float64)
    theta_t = as_float64(theta).detach()
    copies = (theta_t if theta_t.ndim == 3 else theta_t.expand(N, *theta_t.shape)).clone().requires_grad_(True)
    obs = rollout.observations.argmax(-1)
    log_pi = torch.log_softmax(copies, dim=-1)  # (N, O, A)
    log_probs = log_pi[torch.arange(N)[:, None], obs, rollout.actions]
    loss, _ = policy_gradient_loss(log_probs, advantages, rollout.mask)
    (grad,) = torch.autograd.grad(loss, copies)
    # policy_gradient_loss is −(mean over the valid steps); an episode's estimate is the sum over its steps.
    return -grad * rollout.mask.sum().clamp(min=1)


def fit_critic(mdp: TabularMDP, theta: ArrayLike, episodes: Episodes) -> torch.Tensor:
    """A tabular V̂ (S,) regressed on the returns-to-go of ``episodes`` by the library's ``value_loss``.

    For a table the loss ½ mean_t (V̂(s_t) − G_t)² has a diagonal Hessian (visits of s over
    valid steps), so one Newton step from V̂ = 0 is its exact minimiser: the mean return
    from each state. Unvisited states keep V̂ = 0. Fitted on episodes independent of the
    ones it is used on, the baseline does not depend on their actions, so the estimator
    stays unbiased.
    """
    rollout = episodes_to_rollout(mdp, theta, episodes, critic=None)
    zeros = rollout.values
    _, returns = gae(rollout.rewards, zeros, zeros, rollout.terminated, rollout.done, mdp.gamma, 1.0)
    table = torch.zeros(mdp.num_states, dtype=torch.float64, requires_grad=True)
    loss, _ = value_loss(table[episodes.states], returns, rollout.mask)
    (grad,) = torch.autograd.grad(loss, table)
    visits = torch.zeros(mdp.num_states, dtype=torch.float64)
    visits.index_add_(0, episodes.states[rollout.mask], torch.ones(int(rollout.mask.sum()), dtype=torch.float64))
    hessian = visits / rollout.mask.sum().clamp(min=1)
    step = torch.where(visits > 0, grad / hessian.clamp(min=1e-300), 0.0)
    return (-step) * (~mdp.terminal)


def critic_values(
    mdp: TabularMDP, theta: ArrayLike, critic: Critic, seed: int = 0, fit_episodes: int = 500, max_steps: int = 1000
) -> torch.Tensor | None:
    """The critic's V̂ (S,) for an estimator (None for V̂ ≡ 0, which ``episodes_to_rollout`` treats as zeros)."""
    if critic in ("zero", "wrong"):
        return None
    if critic == "constant":
        return torch.full((mdp.num_states,), mdp.objective(theta), dtype=torch.float64) * (~mdp.terminal)
    if critic == "exact":
        with torch.no_grad():
            return mdp.values_t(theta).detach()
    fit = sample_episodes(mdp, theta, fit_episodes, max_steps, seed=seed + 7_919)
    return fit_critic(mdp, theta, fit)


def sample_episode_batches(
    mdp: TabularMDP, theta: ArrayLike, num_episodes: int, seed: int = 0, max_steps: int = 1000, chunk: int = 4096
) -> list[Episodes]:
    """``num_episodes`` episodes of π_θ in batches of at most ``chunk`` (bounded memory)."""
    generator = torch.Generator().manual_seed(int(seed))
    return [
        sample_episodes(mdp, theta, min(chunk, num_episodes - start), max_steps, seed=generator)
        for start in range(0, num_episodes, chunk)
    ]


def estimator_gradients(
    mdp: TabularMDP, theta: ArrayLike, estimator: str, batches: list[Episodes], seed: int = 0, max_steps: int = 1000
) -> torch.Tensor:
    """The estimator's single-episode estimates of ∇J for given episodes: (episodes, O, A), float64.

    Several estimators on the same episodes give paired comparisons. ``seed`` and
    ``max_steps`` only matter to the learned critic's own, independent episodes.
    """
    spec = get_estimator(estimator)
    critic = critic_values(mdp, theta, spec.critic, seed=seed, max_steps=max_steps)
    return torch.cat(
        [per_episode_gradients(theta, episodes_to_rollout(mdp, theta, e, critic), mdp.gamma, spec.lam) for e in batches]
    )


def sample_gradients(
    mdp: TabularMDP,
    theta: ArrayLike,
    estimator: str,
    num_episodes: int,
    seed: int = 0,
    max_steps: int = 1000,
) -> torch.Tensor:
    """``num_episodes`` independent single-episode estimates of ∇J: (num_episodes, O, A), float64."""
    batches = sample_episode_batches(mdp, theta, num_episodes, seed=seed, max_steps=max_steps)
    return estimator_gradients(mdp, theta, estimator, batches, seed=seed, max_steps=max_steps)


@dataclass(frozen=True)
class EstimatorCheck:
    """How a sampled estimator compares with the exact gradient.

    ``z`` (O, A) = (mean − ∇J) / standard error per component; the standard error is
    floored at 1e-9 (1 + ‖∇J‖), so a component that is exact up to rounding gets z ≈ 0
    and one that is wrong with zero variance a huge z. ``total_variance`` is the trace of the
    covariance of one single-episode estimate, Σ Var[ĝ_i].
    """

    estimator: str
    num_episodes: int
    mean: np.ndarray
    std_error: np.ndarray
    exact: np.ndarray
    z: np.ndarray
    max_abs_z: float
    bias_norm: float
    relative_bias: float
    cosine: float
    total_variance: float

    def to_dict(self) -> dict[str, float | int | str]:
        """The scalar numbers, JSON-ready."""
        return {
            "estimator": self.estimator,
            "num_episodes": self.num_episodes,
            "max_abs_z": self.max_abs_z,
            "bias_norm": self.bias_norm,
            "relative_bias": self.relative_bias,
            "cosine": self.cosine,
            "total_variance": self.total_variance,
        }


def summarize(estimator: str, samples: torch.Tensor, exact: ArrayLike) -> EstimatorCheck:
    """Compare per-episode estimates (N, O, A) with the exact gradient (O, A)."""
    samples = samples.double()
    exact_t = as_float64(exact).detach()
    n = samples.shape[0]
    mean = samples.mean(0)
    variance = samples.var(0, unbiased=True)
    std_error = (variance / n).sqrt()
    deviation = mean - exact_t
    exact_norm = exact_t.norm().item()
    # Rounding noise (1e-16) must not count as a deviation where an estimate is exact (zero variance).
    floor = 1e-9 * (1.0 + exact_norm)
    z = deviation / std_error.clamp(min=floor)
    cosine = (mean * exact_t).sum().item() / max(mean.norm().item() * exact_norm, 1e-300)
    return EstimatorCheck(
        estimator=estimator,
        num_episodes=n,
        mean=mean.numpy(),
        std_error=std_error.numpy(),
        exact=exact_t.numpy(),
        z=z.numpy(),
        max_abs_z=float(z.abs().max()),
        bias_norm=deviation.norm().item(),
        relative_bias=deviation.norm().item() / max(exact_norm, 1e-300),
        cosine=cosine,
        total_variance=variance.sum().item(),
    )


def check_estimator(
    mdp: TabularMDP, theta: ArrayLike, estimator: str, num_episodes: int = 10_000, seed: int = 0, max_steps: int = 1000
) -> EstimatorCheck:
    """Sample ``num_episodes`` single-episode estimates and compare their mean with ``mdp.gradient(theta)``."""
    samples = sample_gradients(mdp, theta, estimator, num_episodes, seed=seed, max_steps=max_steps)
    return summarize(estimator, samples, mdp.gradient(as_float64(theta)))
