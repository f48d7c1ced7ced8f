"""Gradient variance and SNR across minibatches, against a hand-written per-sample reference."""

import csv
import dataclasses
import math

import numpy as np
import pytest
import torch

from policygrad.agent import Agent, AgentSpec
from policygrad.algorithms import get_algorithm
from policygrad.algorithms.a2c import A2CConfig
from policygrad.algorithms.actor_critic import ActorCriticConfig
from policygrad.algorithms.baseline import BaselineConfig
from policygrad.algorithms.ppo import PPOConfig
from policygrad.algorithms.reinforce import ReinforceConfig
from policygrad.diagnostics import actor_parameters, gradient_variance, variance_and_snr
from policygrad.rollout import Rollout

N, T, OBS, ACTIONS = 2, 4, 3, 2


def make(critic: bool, seed: int = 0):
    torch.manual_seed(seed)
    agent = Agent(
        AgentSpec(obs_dim=OBS, discrete=True, action_dim=ACTIONS, hidden_sizes=(8,), activation="tanh", critic=critic)
    )
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(N, T, dtype=torch.bool)
    terminated[0, 1] = terminated[1, 3] = True  # env 0: an episode ends at t = 1 and a new one starts
    values = torch.randn(N, T, generator=g) if critic else torch.zeros(N, T)
    next_values = torch.cat([values[:, 1:], torch.randn(N, 1, generator=g)], 1) if critic else torch.zeros(N, T)
    rollout = Rollout(
        observations=torch.randn(N, T, OBS, generator=g),
        actions=torch.randint(0, ACTIONS, (N, T), generator=g),
        log_probs=torch.zeros(N, T),
        values=values,
        rewards=torch.rand(N, T, generator=g) + 0.5,
        terminated=terminated,
        truncated=torch.zeros(N, T, dtype=torch.bool),
        mask=torch.ones(N, T, dtype=torch.bool),
        next_values=next_values,
    )
    return agent, rollout


def reference_advantages(rollout, gamma, lam):
    """GAE by an obvious loop per environment."""
    adv = torch.zeros(N, T)
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            term = bool(rollout.terminated[n, t])
            delta = rollout.rewards[n, t] + gamma * (0.0 if term else rollout.next_values[n, t]) - rollout.values[n, t]
            running = delta + gamma * lam * (0.0 if term else running)
            adv[n, t] = running
    return adv


def reference(agent, rollout, gamma, lam):
    """One minibatch per sample: the sample variance of the per-sample gradients ∇log π(a|s) A."""
    adv = reference_advantages(rollout, gamma, lam)
    params = actor_parameters(agent)
    rows = []
    for n in range(N):
        for t in range(T):
            log_prob = agent.distribution(rollout.observations[n, t][None]).log_prob(rollout.actions[n, t][None])
            grads = torch.autograd.grad(log_prob.sum() * adv[n, t], params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
    rows = torch.stack(rows).double()
    variance = rows.var(0).sum().item()
    return variance, rows.mean(0).pow(2).sum().item() / variance


@pytest.mark.parametrize(
    "algo,cfg,critic,lam",
    [
        ("reinforce", ReinforceConfig(gamma=0.9, gradient_variance_minibatches=N * T), False, 1.0),
        ("reinforce-baseline", BaselineConfig(gamma=0.9, gradient_variance_minibatches=N * T), True, 1.0),
        ("actor-critic", ActorCriticConfig(gamma=0.9, gradient_variance_minibatches=N * T), True, 0.0),
        ("a2c", A2CConfig(gamma=0.9, gae_lambda=0.7, gradient_variance_minibatches=N * T), True, 0.7),
    ],
)
def test_each_algorithm_uses_its_own_advantage(algo, cfg, critic, lam):
    agent, rollout = make(critic)
    got = gradient_variance(agent, rollout, get_algorithm(algo), cfg)
    variance, snr = reference(agent, rollout, cfg.gamma, lam)
    assert got["grad_variance"] == pytest.approx(variance, rel=1e-4)
    assert got["grad_snr"] == pytest.approx(snr, rel=1e-4)


def test_ppo_normalises_advantages_per_minibatch():
    agent, rollout = make(True)
    cfg = PPOConfig(num_envs=N, rollout_steps=T, minibatch_size=T, gradient_variance_minibatches=2)
    scaled = dataclasses.replace(
        rollout, rewards=10 * rollout.rewards, values=10 * rollout.values, next_values=10 * rollout.next_values
    )
    # Standardised advantages do not see the reward scale; raw ones scale the variance by 10².
    ppo = get_algorithm("ppo")
    once, tenfold = gradient_variance(agent, rollout, ppo, cfg), gradient_variance(agent, scaled, ppo, cfg)
    assert tenfold["grad_variance"] == pytest.approx(once["grad_variance"], rel=1e-5)
    raw = dataclasses.replace(cfg, normalize_advantages=False)
    once, tenfold = gradient_variance(agent, rollout, ppo, raw), gradient_variance(agent, scaled, ppo, raw)
    assert tenfold["grad_variance"] == pytest.approx(100 * once["grad_variance"], rel=1e-5)


def test_variance_and_snr_by_hand():
    grads = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # mean (2, 1); variances 2 and 2
    assert variance_and_snr(grads) == {"grad_variance": 4.0, "grad_snr": 5.0 / 4.0}


def test_too_few_steps_give_nan_and_padding_is_ignored():
    agent, rollout = make(False)
    cfg = ReinforceConfig(gradient_variance_minibatches=8)
    rollout.mask[:, 2:] = False  # 4 valid steps < 8 minibatches
    out = gradient_variance(agent, rollout, get_algorithm("reinforce"), cfg)
    assert math.isnan(out["grad_variance"]) and math.isnan(out["grad_snr"])


def test_training_logs_gradient_variance_and_leaves_training_unchanged(tmp_path):
    from policygrad import train

    common = dict(total_steps=600, eval_every=0, eval_episodes=1, seed=0, num_envs=2)
    _, logged = train("reinforce-baseline", "CartPole-v1", out=tmp_path / "a", log_gradient_variance=True, **common)
    _, plain = train("reinforce-baseline", "CartPole-v1", out=tmp_path / "b", **common)
    with open(tmp_path / "a" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(float(r["grad_variance"]) > 0 and float(r["grad_snr"]) > 0 for r in rows)
    # The diagnostic draws from its own generator: the run itself is identical.
    np.testing.assert_array_equal([h["policy_loss"] for h in logged], [h["policy_loss"] for h in plain])
