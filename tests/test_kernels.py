"""The fused kernels' pieces against their references: the modules, the distributions, torch.optim.Adam.

Whole updates through every learner are compared in tests/test_learners.py; here the layout's
forward passes, the rollout's fused sampling, and the bookkeeping that keeps the agent's
parameters and the flat buffers one and the same.
"""

import pytest
import torch

from policygrad import kernels
from policygrad.agent import Agent, AgentSpec
from policygrad.algorithms import ppo
from policygrad.config import build_config
from policygrad.envs import make_envs
from policygrad.kernels import small_batch
from policygrad.kernels.eligibility import agent_parameters
from policygrad.kernels.fused_mlp import FusedSampler, fused_form, invalidate
from policygrad.rollout import RolloutCollector


def make_agent(discrete=True, critic=True, activation="tanh", hidden=(16, 12), obs_dim=5, actions=3, seed=0):
    torch.manual_seed(seed)
    bounds = None if discrete else (-2.0,) * actions
    spec = AgentSpec(
        obs_dim, discrete, actions, hidden, activation, critic, -0.3, bounds, None if discrete else (2.0,) * actions
    )
    agent = Agent(spec)
    with torch.no_grad():  # non-zero biases and a larger output layer, so every term matters
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return agent


def observations(agent, size, seed=1):
    return torch.randn(size, agent.spec.obs_dim, generator=torch.Generator().manual_seed(seed)) * 2


def fused_sample(agent, obs, noise):
    """What the rollout draws: the fused forward of FusedSampler."""
    return FusedSampler(agent).ready().sample(obs, noise)


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("size", [7, 600])  # 600 rows take the 2σ(2x) − 1 form of tanh
def test_fused_forward_matches_the_modules(discrete, activation, size):
    agent = make_agent(discrete, activation=activation)
    obs = observations(agent, size)
    optimizer = torch.optim.Adam(agent.parameters())
    fused, params = fused_form(agent)
    fused.begin(params, optimizer)
    out, _ = fused.forward(obs)
    with torch.no_grad():
        torch.testing.assert_close(out[0].t(), agent.actor(obs), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1, 0], agent.value(obs), atol=1e-5, rtol=1e-5)
        logits, values = FusedSampler(agent).ready().infer(obs)
        torch.testing.assert_close(logits, agent.actor(obs), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(values, agent.value(obs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("size", [2, 40, 200, 600])  # at 200 rows the actor alone is under the σ-form threshold
def test_actor_forward_is_the_fused_forwards_actor_row(discrete, activation, size):
    agent = make_agent(discrete, activation=activation)
    obs = observations(agent, size)
    fused = FusedSampler(agent).ready()
    assert torch.equal(fused.actor_forward(obs), fused.forward(obs)[0][0])


def test_fused_sampling_draws_what_the_distribution_draws():
    for discrete in (True, False):
        agent = make_agent(discrete)
        obs = observations(agent, 500)
        g = torch.Generator().manual_seed(3)
        noise = torch.rand(500, generator=g) if discrete else torch.randn(500, 3, generator=g)
        with torch.no_grad():
            actions, log_probs, values = fused_sample(agent, obs, noise)
            dist = agent.distribution(obs)
            if discrete:
                # Inverse-CDF sampling with the same uniforms: the same actions, exactly.
                expected = (dist.probs.cumsum(-1) <= noise.unsqueeze(-1)).sum(-1).clamp(max=2)
                assert torch.equal(actions, expected)
            else:
                torch.testing.assert_close(actions, dist.mean + dist.stddev * noise)
            torch.testing.assert_close(log_probs, dist.log_prob(actions), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(values, agent.value(obs), atol=1e-5, rtol=1e-5)


def test_fused_sampling_follows_the_policy_law():
    agent = make_agent(True, hidden=(8,))
    obs = observations(agent, 1).expand(20_000, -1)
    with torch.no_grad():
        actions, _, _ = fused_sample(agent, obs, torch.rand(20_000, generator=torch.Generator().manual_seed(0)))
        probs = agent.distribution(obs[:1]).probs[0]
    freq = torch.bincount(actions, minlength=3).float() / 20_000
    assert torch.allclose(freq, probs, atol=0.015)


def test_policy_snapshot_follows_weight_changes():
    agent = make_agent(True)
    obs, noise = observations(agent, 16), torch.rand(16)
    with torch.no_grad():
        before = fused_sample(agent, obs, noise)[1]
        agent.actor[0].weight.mul_(1.5)  # an in-place change, as an optimiser step makes
        after = fused_sample(agent, obs, noise)[1]
        torch.testing.assert_close(after, agent.distribution(obs).log_prob(fused_sample(agent, obs, noise)[0]))
        assert not torch.equal(before, after)
        agent.load_state_dict(make_agent(True, seed=5).state_dict())
        torch.testing.assert_close(fused_sample(agent, obs, noise)[2], agent.value(obs))


def test_small_batch_serves_small_batches_of_modest_networks_only():
    def fused_of(hidden):
        agent = make_agent(hidden=hidden)
        return fused_form(agent)[0]

    default, wide = fused_of((64, 64)), fused_of((256, 256))
    assert small_batch.serves(default, 40) and small_batch.serves(default, 64)
    assert not small_batch.serves(default, 65)  # the torch kernels from here on
    assert not small_batch.serves(wide, 40)  # a 256-wide product would start BLAS threads


def test_policygrad_adam_is_torch_adam_without_torch_optim():
    from policygrad.optim import Adam

    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt_ours, opt_theirs = Adam(ours, lr=1e-2, eps=1e-5), torch.optim.Adam(theirs, lr=1e-2, eps=1e-5)
    for _ in range(10):
        for p, q in zip(ours, theirs, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        opt_ours.step(), opt_theirs.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q)
    saved_ours, saved_theirs = opt_ours.state_dict(), opt_theirs.state_dict()
    assert saved_ours["param_groups"] == saved_theirs["param_groups"]
    # Each loads the other's state: checkpoints do not depend on which optimiser wrote them.
    cross_ours, cross_theirs = Adam(ours), torch.optim.Adam(theirs)
    cross_ours.load_state_dict(saved_theirs), cross_theirs.load_state_dict(saved_ours)
    for p, q in zip(ours, theirs, strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(cross_ours.state[p][key], opt_theirs.state[q][key])
            torch.testing.assert_close(cross_theirs.state[q][key], opt_ours.state[p][key])
    assert cross_ours.param_groups[0]["lr"] == 1e-2


def test_a_training_run_does_not_import_the_compiler_stack(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, policygrad; "
        f"policygrad.train('ppo', 'CartPole-v1', out={str(tmp_path / 'run')!r}, total_steps=1024, eval_every=0); "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_parameters_are_views_of_the_flat_buffer_and_survive_copies():
    import copy
    import io

    agent = make_agent(True)
    obs, noise = observations(agent, 16), torch.rand(16)
    fused = FusedSampler(agent).ready()
    assert fused.owns(agent_parameters(agent))
    with torch.no_grad():
        expected = fused_sample(agent, obs, noise)
        twin = copy.deepcopy(agent)  # independent parameters, its own buffer
        buffer = io.BytesIO()
        torch.save(agent, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        for other in (twin, loaded):
            for got, want in zip(fused_sample(other, obs, noise), expected, strict=True):
                assert torch.equal(got, want)
        twin.actor[0].weight.add_(1.0)
        assert torch.equal(fused_sample(agent, obs, noise)[1], expected[1])
        assert not torch.equal(fused_sample(twin, obs, noise)[1], expected[1])
        # Writes through .data bypass version counters: invalidate() makes the rollout re-read.
        agent.actor[0].weight.data.mul_(2.0)
        invalidate(agent)
        torch.testing.assert_close(fused_sample(agent, obs, noise)[2], agent.value(obs))
        torch.testing.assert_close(
            fused_sample(agent, obs, noise)[1], agent.distribution(obs).log_prob(fused_sample(agent, obs, noise)[0])
        )


@pytest.mark.parametrize("learner", ["fused-mlp", "autograd"])
def test_sampling_after_an_update_uses_the_new_weights(learner):
    from policygrad.optim import Adam

    agent = make_agent(True, obs_dim=4, actions=2)
    envs, _ = make_envs("CartPole-v1", 4, "sync")
    cfg = build_config(
        ppo.Config, dict(num_envs=4, rollout_steps=16, minibatch_size=16, learning_rate=0.05, learner=learner)
    )
    optimizer = Adam(agent.parameters(), lr=cfg.learning_rate)
    collector = RolloutCollector(envs, agent, seed=0)
    collector.reset(list(range(4)))
    obs, noise = observations(agent, 32)[:, :4], torch.rand(32)
    with torch.no_grad():
        before = fused_sample(agent, obs, noise)[1]
    ppo.update(kernels.select(agent, optimizer, cfg), collector.collect(16, 0), cfg, 0)
    with torch.no_grad():
        actions, log_probs, values = fused_sample(agent, obs, noise)
        assert not torch.equal(log_probs, before)
        torch.testing.assert_close(log_probs, agent.distribution(obs).log_prob(actions), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(values, agent.value(obs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("discrete", [True, False])
def test_the_agents_own_sampling_draws_what_the_fused_forward_draws(discrete):
    """``learner=autograd`` runs sample with ``Agent.sample``: the same law, equal up to float rounding."""
    agent = make_agent(discrete)
    obs = observations(agent, 300)
    g = torch.Generator().manual_seed(4)
    noise = torch.rand(300, generator=g) if discrete else torch.randn(300, 3, generator=g)
    with torch.no_grad():
        plain, fused = agent.sample(obs, noise), fused_sample(agent, obs, noise)
    if discrete:
        assert torch.equal(plain[0], fused[0])
    for got, want in zip(fused, plain, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
