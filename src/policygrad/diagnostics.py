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

from typing import Any

import torch

from policygrad.agent import Agent
from policygrad.algorithms.common import advantages_and_returns
from policygrad.errors import PolicygradError
from policygrad.losses import normalize, policy_gradient_loss
from policygrad.rollout import Rollout, _stream_seed

#: GAE λ of each algorithm's advantage (None: the config's ``gae_lambda``). REINFORCE has no
#: critic, so its stored values are zeros and λ = 1 gives G_t.
ADVANTAGE_LAMBDA: dict[str, float | None] = {
    "reinforce": 1.0,
    "reinforce-baseline": 1.0,
    "actor-critic": 0.0,
    "a2c": None,
    "ppo": None,
}


def advantage_lambda(algo_name: str, cfg: Any) -> float:
    """The λ with which ``algo_name`` computes its advantages."""
    if algo_name not in ADVANTAGE_LAMBDA:
        raise PolicygradError(f"gradient variance: no advantage rule for algorithm '{algo_name}'")
    lam = ADVANTAGE_LAMBDA[algo_name]
    return float(cfg.gae_lambda) if lam is None else lam


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


def gradient_variance(agent: Agent, rollout: Rollout, algo_name: str, cfg: Any) -> dict[str, float]:
    """Variance and SNR of the policy-gradient estimate across ``cfg.gradient_variance_minibatches`` minibatches.

    Uses the advantage of ``algo_name`` (λ = 1 and V ≡ 0 for REINFORCE, λ = 1 with the
    critic for its baseline, λ = 0 for Actor-Critic, ``cfg.gae_lambda`` for A2C and PPO,
    normalised as the algorithm normalises it). Call it before the update, while the
    agent is still the policy that collected ``rollout`` (then PPO's clipped surrogate
    has exactly this gradient). NaN when the batch has fewer valid steps than minibatches.
    """
    num_minibatches = cfg.gradient_variance_minibatches
    advantages, _ = advantages_and_returns(rollout, cfg.gamma, advantage_lambda(algo_name, cfg))
    mask = rollout.mask.reshape(-1)
    valid = torch.nonzero(mask).flatten()
    if valid.numel() < num_minibatches:
        return {"grad_variance": float("nan"), "grad_snr": float("nan")}
    advantages = advantages.reshape(-1)
    per_minibatch = algo_name == "ppo" and cfg.normalize_advantages
    if algo_name != "ppo" and getattr(cfg, "normalize_advantages", False):
        advantages = normalize(advantages, mask)  # A2C standardises over the whole batch
    # Keyed by the seed and the batch size only: the global RNG (and so training) is untouched.
    generator = torch.Generator().manual_seed(_stream_seed(cfg.seed, 3, valid.numel()))
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
