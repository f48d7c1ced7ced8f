"""Advantage estimation: one function, generalised advantage estimation, serves the whole chain."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", torch.Tensor, np.ndarray)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalised advantage estimation (Schulman et al. 2016, eq. 16) and the value targets.

    .. math::

        \delta_t = r_t + \gamma (1 - \text{terminated}_t) V(s_{t+1}) - V(s_t)

        A_t = \delta_t + \gamma \lambda (1 - \text{done}_t) A_{t+1}

    ``next_values[t]`` is V of the observation that followed step t: for a truncated
    step that is V(true final observation), so truncation bootstraps and termination
    does not. ``done`` (terminated or truncated) stops the recursion at episode ends.

    The whole evolution chain is this one function:

    ========================  ============================  ==========================
    algorithm                 arguments                     A_t
    ========================  ============================  ==========================
    REINFORCE                 λ = 1, values ≡ 0             G_t (returns-to-go)
    REINFORCE + baseline      λ = 1, learned values         G_t − V(s_t)
    Actor-Critic              λ = 0                         r_t + γ V(s_{t+1}) − V(s_t)
    A2C / PPO                 0 < λ < 1                     GAE(λ)
    ========================  ============================  ==========================

    ==============  =======  ======  ==============================================
    argument        symbol   shape   dtype
    ==============  =======  ======  ==============================================
    rewards         r_t      (N, T)  float
    values          V(s_t)   (N, T)  float
    next_values     V(s')    (N, T)  float, V of the observation after step t
    terminated      —        (N, T)  bool, the MDP ended (no bootstrap)
    done            —        (N, T)  bool, terminated or truncated (episode boundary)
    ==============  =======  ======  ==============================================

    Returns ``(advantages, returns)``, both (N, T), where ``returns = advantages + values``
    is the λ-return, the critic's regression target. Steps that are padding (a masked
    reset step) must follow a ``done`` step, so they never leak into real steps.
    """
    if rewards.shape != values.shape or rewards.shape != next_values.shape:
        raise ValueError(
            f"gae: rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and "
            f"next_values {tuple(next_values.shape)} must have the same (N, T) shape"
        )
    if rewards.device.type == "cpu" and not (
        rewards.requires_grad or values.requires_grad or next_values.requires_grad
    ):
        numpy_advantages, numpy_returns = _gae_numpy(
            [x.numpy() for x in (rewards, values, next_values, terminated, done)], gamma, lam
        )
        return torch.from_numpy(numpy_advantages), torch.from_numpy(numpy_returns)
    not_terminated = 1.0 - terminated.to(rewards.dtype)
    not_done = 1.0 - done.to(rewards.dtype)
    deltas = rewards + gamma * not_terminated * next_values - values
    decay = (gamma * lam) * not_done
    advantages = _backward(deltas, decay, torch.empty_like(rewards), torch.zeros_like(rewards[..., 0]))
    return advantages, advantages + values


def _gae_numpy(arrays: list[np.ndarray], gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gae` on numpy views of its five CPU tensors: the same arithmetic, op for op, at numpy's per-op cost."""
    r, v, nv, terminated, done = arrays
    dtype = r.dtype.type
    not_terminated = 1.0 - terminated.astype(r.dtype)
    not_done = 1.0 - done.astype(r.dtype)
    deltas = r + dtype(gamma) * not_terminated * nv - v
    decay = dtype(gamma * lam) * not_done
    advantages = _backward(deltas, decay, np.empty_like(r), np.zeros_like(r[..., 0]))
    return advantages, advantages + v


def _backward(deltas: Array, decay: Array, advantages: Array, running: Array) -> Array:
    """A_t = δ_t + decay_t A_{t+1} into ``advantages``: backwards over time, vectorised over the N rollouts.

    The same code for torch tensors and numpy arrays; ``running`` is A after the last step (zeros, (N,)).
    """
    for t in range(deltas.shape[-1] - 1, -1, -1):
        running = deltas[..., t] + decay[..., t] * running
        advantages[..., t] = running
    return advantages


def returns_to_go(rewards: torch.Tensor, terminated: torch.Tensor, done: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted returns-to-go G_t within each episode: ``gae`` with λ = 1 and V ≡ 0."""
    zeros = torch.zeros_like(rewards)
    advantages, _ = gae(rewards, zeros, zeros, terminated, done, gamma, 1.0)
    return advantages
