r"""Training diagnostics: how noisy is the policy-gradient estimate?

With ``log_gradient_variance`` on, every update splits its batch into K random
minibatches (``gradient_variance_minibatches``), computes the policy-gradient estimate
ĝ_k of each from the actor's ``policy_gradient_loss`` with the advantage the algorithm
itself uses, and logs

.. math::

    \text{grad\_variance} = \frac{1}{K-1}\sum_k \lVert \hat g_k - \bar g \rVert^2,
    \qquad
    \text{grad\_snr} = \frac{\lVert \bar g \rVert^2}{\text{grad\_variance}},

the trace of the covariance of one minibatch's estimate, and the squared length of the
mean over it. A baseline or a critic should lower the first and raise the second.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

from policygrad.agent import Agent
from policygrad.losses import normalize, policy_gradient_loss
from policygrad.rollout import Rollout
from policygrad.seeding import Stream, stream_seed


def actor_parameters(agent: Agent) -> list[torch.nn.Parameter]:
    """The policy's parameters (everything but the critic)."""
    critic_ids = {id(p) for p in agent.critic.parameters()} if agent.critic is not None else set()
    return [p for p in agent.parameters() if id(p) not in critic_ids and p.requires_grad]


def minibatch_gradients(
    agent: Agent,
    observations: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    num_minibatches: int,
    generator: torch.Generator,
    normalize_each: bool = False,
) -> torch.Tensor:
    """Policy-gradient estimates of K random, disjoint minibatches: (K, number of actor parameters).

    observations: (B, obs), actions: (B[, act]), advantages: (B,), all valid samples.
    Each estimate is −∇ of ``policy_gradient_loss`` on its minibatch (a mean over its
    samples); ``normalize_each`` standardises the advantages per minibatch (PPO).
    """
    params = actor_parameters(agent)
    order = torch.randperm(advantages.shape[0], generator=generator)
    rows = []
    for index in order.tensor_split(num_minibatches):
        mask = torch.ones(index.shape[0], dtype=torch.bool)
        adv = normalize(advantages[index], mask) if normalize_each else advantages[index]
        log_probs = agent.distribution(observations[index]).log_prob(actions[index])
        loss, _ = policy_gradient_loss(log_probs, adv, mask)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        rows.append(
            -torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)]
            )
        )
    return torch.stack(rows)


def variance_and_snr(gradients: torch.Tensor) -> dict[str, float]:
    """``grad_variance`` (trace of the sample covariance) and ``grad_snr`` of K estimates (K, P)."""
    gradients = gradients.double()
    mean = gradients.mean(0)
    variance = gradients.var(0, unbiased=True).sum().item()
    signal = mean.pow(2).sum().item()
    snr = signal / variance if variance > 0 else float("inf")
    return {"grad_variance": variance, "grad_snr": snr}


def gradient_variance(agent: Agent, rollout: Rollout, algorithm: ModuleType, cfg: Any) -> dict[str, float]:
    """Variance and SNR of the policy-gradient estimate across ``cfg.gradient_variance_minibatches`` minibatches.

    Uses the algorithm module's own ``advantages(rollout, cfg)`` (G_t for REINFORCE, G_t − V
    for its baseline, the TD error for Actor-Critic, GAE(λ) for A2C and PPO), standardised
    per minibatch where the algorithm does that (``NORMALIZES_EACH_MINIBATCH``, PPO). Call it
    before the update, while the agent is still the policy that collected ``rollout`` (then
    PPO's clipped surrogate has exactly this gradient). NaN when the batch has fewer valid
    steps than minibatches.
    """
    num_minibatches = cfg.gradient_variance_minibatches
    advantages, _ = algorithm.advantages(rollout, cfg)
    mask = rollout.mask.reshape(-1)
    valid = torch.nonzero(mask).flatten()
    if valid.numel() < num_minibatches:
        return {"grad_variance": float("nan"), "grad_snr": float("nan")}
    advantages = advantages.reshape(-1)
    per_minibatch = getattr(algorithm, "NORMALIZES_EACH_MINIBATCH", False) and cfg.normalize_advantages
    # Keyed by the seed and the batch size only: the global RNG (and so training) is untouched.
    generator = torch.Generator().manual_seed(stream_seed(cfg.seed, Stream.GRADIENT_VARIANCE, valid.numel()))
    gradients = minibatch_gradients(
        agent,
        rollout.flat("observations")[valid],
        rollout.flat("actions")[valid],
        advantages[valid],
        num_minibatches,
        generator,
        normalize_each=per_minibatch,
    )
    return variance_and_snr(gradients)
