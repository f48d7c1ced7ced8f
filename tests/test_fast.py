"""The fused hot paths (policygrad.fast) against their references: autograd, torch.optim.Adam, distributions."""

import pytest
import torch

from policygrad import fast
from policygrad.agent import Agent, AgentSpec
from policygrad.algorithms import a2c, ppo, reinforce
from policygrad.config import build_config
from policygrad.envs import make_envs
from policygrad.errors import NonFiniteLossError
from policygrad.losses import clipped_surrogate_loss, entropy_bonus, masked_mean, value_loss
from policygrad.rollout import Rollout, RolloutCollector


def make_agent(discrete=True, critic=True, activation="tanh", hidden=(16, 12), obs_dim=5, actions=3, seed=0):
    torch.manual_seed(seed)
    bounds = None if discrete else (-2.0,) * actions
    spec = AgentSpec(
        obs_dim, discrete, actions, hidden, activation, critic, -0.3, bounds, None if discrete else (2.0,) * actions
    )
    agent = Agent(spec)
    with torch.no_grad():  # non-zero biases and a larger output layer, so every term of the gradient matters
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return agent


def batch(agent, size, seed=1):
    g = torch.Generator().manual_seed(seed)
    spec = agent.spec
    obs = torch.randn(size, spec.obs_dim, generator=g) * 2
    with torch.no_grad():
        dist = agent.distribution(obs)
        actions = dist.sample()
        # Old log-probs away from the current ones, so that clipping is active on both sides.
        old = dist.log_prob(actions) + 0.6 * torch.randn(size, generator=g)
    advantages = torch.randn(size, generator=g)
    returns = torch.randn(size, generator=g) * 3
    mask = torch.rand(size, generator=g) > 0.2
    return obs, actions, old, advantages, returns, mask


def autograd_grads(agent, loss):
    params = fast.agent_parameters(agent)
    return torch.autograd.grad(loss, params)


def fused_grads(fused):
    return [v.clone() for v in fused._param_views(fused.grad)]


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("size", [7, 600])  # 600 rows take the 2σ(2x) − 1 form of tanh
def test_fused_forward_matches_the_modules(discrete, activation, size):
    agent = make_agent(discrete, activation=activation)
    obs = batch(agent, size)[0]
    optimizer = torch.optim.Adam(agent.parameters())
    fused, params = fast.learner(agent, optimizer)
    fused.begin(params, optimizer)
    out, _ = fused.forward(obs)
    with torch.no_grad():
        torch.testing.assert_close(out[0].t(), agent.actor(obs), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1, 0], agent.value(obs), atol=1e-5, rtol=1e-5)
        logits, values = fast.policy(agent).infer(obs)
        torch.testing.assert_close(logits, agent.actor(obs), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(values, agent.value(obs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("size", [2, 40, 200, 600])  # at 200 rows the actor alone is under the σ-form threshold
def test_actor_forward_is_the_fused_forwards_actor_row(discrete, activation, size):
    agent = make_agent(discrete, activation=activation)
    obs = batch(agent, size)[0]
    fused = fast.policy(agent)
    assert torch.equal(fused.actor_forward(obs), fused.forward(obs)[0][0])


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_ppo_gradient_matches_autograd(discrete, activation, ent_coef):
    agent = make_agent(discrete, activation=activation)
    obs, actions, old, adv, returns, mask = batch(agent, 64)
    clip, vf_coef = 0.2, 0.7
    log_probs, entropy, values = agent.evaluate(obs, actions)
    pg, metrics = clipped_surrogate_loss(log_probs, old, adv, clip, mask)
    assert 0.1 < metrics["clip_fraction"] < 0.9  # both branches of the min are exercised
    v_loss, _ = value_loss(values, returns, mask)
    ent, _ = entropy_bonus(entropy, mask)
    expected = autograd_grads(agent, pg + vf_coef * v_loss - ent_coef * ent)

    optimizer = torch.optim.Adam(agent.parameters())
    fused, params = fast.learner(agent, optimizer)
    fused.begin(params, optimizer)
    weight = mask.float() / mask.sum()
    one_hot = fast._one_hot(actions, agent.spec.action_dim) if discrete else None
    log_ratio, error = torch.empty(64), torch.empty(64)
    grad_out = torch.zeros(2, agent.spec.action_dim, 64)
    weights = fast.PPOWeights.of(adv, weight, clip, vf_coef, ent_coef)
    fast.ppo_gradient(
        fused, obs, actions, one_hot, old, returns, weights, log_ratio_out=log_ratio, error_out=error, grad_out=grad_out
    )
    for got, want in zip(fused_grads(fused), expected, strict=True):
        torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-4)
    torch.testing.assert_close(log_ratio, (log_probs - old).detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("critic", [True, False])
def test_actor_critic_gradient_matches_autograd(discrete, critic):
    agent = make_agent(discrete, critic=critic)
    obs, actions, _, adv, returns, mask = batch(agent, 40)
    log_probs, entropy, values = agent.evaluate(obs, actions)
    loss = -masked_mean(log_probs * adv, mask) - 0.01 * masked_mean(entropy, mask)
    if critic:
        loss = loss + 0.5 * value_loss(values, returns, mask)[0]
    expected = autograd_grads(agent, loss)
    optimizer = torch.optim.Adam(agent.parameters())
    fused, params = fast.learner(agent, optimizer)
    fused.begin(params, optimizer)
    fast.actor_critic_gradient(fused, obs, actions, adv, mask.float() / mask.sum(), returns, vf_coef=0.5, ent_coef=0.01)
    for got, want in zip(fused_grads(fused), expected, strict=True):
        torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-4)


def assert_same_training(
    params, state, metrics, ref_params, ref_state, ref_metrics, atol, rtol, metric_rel, metric_abs
):
    """Two runs of updates agree: parameters, Adam's step counts and first moments, every metric."""
    for got, want in zip(params, ref_params, strict=True):
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol)
    for k in ref_state:
        assert float(state[k]["step"]) == float(ref_state[k]["step"])
        torch.testing.assert_close(state[k]["exp_avg"], ref_state[k]["exp_avg"], atol=atol / 2, rtol=rtol * 10)
    for got, want in zip(metrics, ref_metrics, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=metric_rel, abs=metric_abs), key


def _actor_critic_steps(agent, size, small_batch_max, steps=3, ent_coef=0.01):
    """Parameters, Adam state and metrics after ``steps`` fused actor-critic steps on one batch."""
    from policygrad import small_batch

    obs, actions, old, adv, returns, mask = batch(agent, size)
    optimizer = torch.optim.Adam(agent.parameters(), lr=3e-3)
    limit, small_batch.MAX_SAMPLES = small_batch.MAX_SAMPLES, small_batch_max
    try:
        metrics = [
            fast.actor_critic_step(
                *fast.learner(agent, optimizer), optimizer, obs, actions, adv, returns, mask, old, returns * 0.5,
                vf_coef=0.5 if agent.critic is not None else 0.0, ent_coef=ent_coef, max_grad_norm=0.5,
            )
            for _ in range(steps)
        ]  # fmt: skip
    finally:
        small_batch.MAX_SAMPLES = limit
    return [p.detach().clone() for p in agent.parameters()], optimizer.state_dict()["state"], metrics


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("critic", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("ent_coef", [0.0, 0.01])
def test_small_batch_numpy_step_equals_the_torch_step(discrete, critic, activation, ent_coef):
    """policygrad.small_batch takes batches up to MAX_SAMPLES: the same step as the torch kernels."""
    kwargs = dict(discrete=discrete, critic=critic, activation=activation)
    torch_params, torch_state, torch_metrics = _actor_critic_steps(make_agent(**kwargs), 40, 0, ent_coef=ent_coef)
    params, state, metrics = _actor_critic_steps(make_agent(**kwargs), 40, 64, ent_coef=ent_coef)
    assert all(float(v["step"]) == 3 for v in state.values())
    assert_same_training(params, state, metrics, torch_params, torch_state, torch_metrics, 1e-6, 1e-5, 1e-4, 1e-6)
    for k in torch_state:
        torch.testing.assert_close(state[k]["exp_avg_sq"], torch_state[k]["exp_avg_sq"], atol=1e-7, rtol=1e-4)


def test_small_batch_serves_small_batches_of_modest_networks_only():
    from policygrad import small_batch

    def fused_of(hidden):
        agent = make_agent(hidden=hidden)
        return fast.learner(agent, torch.optim.Adam(agent.parameters()))[0]

    default, wide = fused_of((64, 64)), fused_of((256, 256))
    assert small_batch.serves(default, 40) and small_batch.serves(default, 64)
    assert not small_batch.serves(default, 65)  # the torch kernels from here on
    assert not small_batch.serves(wide, 40)  # a 256-wide product would start BLAS threads


def test_small_batch_non_finite_step_raises_and_leaves_the_weights_alone():
    agent = make_agent()
    obs, actions, old, adv, returns, mask = batch(agent, 40)
    optimizer = torch.optim.Adam(agent.parameters())
    before = [p.clone() for p in agent.parameters()]
    adv[3] = float("nan")
    with pytest.raises(NonFiniteLossError):
        fast.actor_critic_step(
            *fast.learner(agent, optimizer), optimizer, obs, actions, adv, returns, mask | True, old, returns,
            vf_coef=0.5, ent_coef=0.0, max_grad_norm=0.5,
        )  # fmt: skip
    assert all(torch.equal(p, q) for p, q in zip(before, agent.parameters(), strict=True))
    assert all(float(s["step"]) == 0 for s in optimizer.state.values())


def collect(env_id, module, overrides, fused, updates, critic=True, episodes=False):
    envs, info = make_envs(env_id, 4, "sync")
    torch.manual_seed(0)
    spec = AgentSpec(
        info.obs_dim, info.discrete, info.action_dim, (32, 32), "tanh", critic, 0.0, info.action_low, info.action_high
    )
    agent = Agent(spec)
    cfg = build_config(module.Config, dict(env_id=env_id, num_envs=4, fused=fused, **overrides))
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    collector = RolloutCollector(envs, agent, seed=0)
    collector.reset(list(range(4)))
    rollouts = [
        collector.collect_episodes(100, u) if episodes else collector.collect(cfg.rollout_steps, u)
        for u in range(updates)
    ]
    metrics = [module.update(agent, optimizer, r, cfg, u) for u, r in enumerate(rollouts)]
    return agent, optimizer, metrics


@pytest.mark.parametrize(
    "env_id,module,overrides,critic,episodes",
    [
        (
            "CartPole-v1",
            ppo,
            dict(rollout_steps=32, minibatch_size=32, update_epochs=3, learning_rate=3e-3),
            True,
            False,
        ),
        ("CartPole-v1", ppo, dict(rollout_steps=16, minibatch_size=16, update_epochs=4, target_kl=1e-4), True, False),
        (
            "Pendulum-v1",
            ppo,
            dict(rollout_steps=32, minibatch_size=64, ent_coef=0.01, normalize_advantages=False),
            True,
            False,
        ),
        ("CartPole-v1", a2c, dict(rollout_steps=5, ent_coef=0.01), True, False),
        ("Pendulum-v1", a2c, dict(rollout_steps=5, normalize_advantages=True), True, False),
        ("CartPole-v1", reinforce, dict(), False, True),
    ],
)
def test_fused_updates_equal_the_autograd_reference(env_id, module, overrides, critic, episodes):
    # Every rollout is collected before the first update, so both paths update from the same data.
    ref_agent, ref_opt, ref_metrics = collect(env_id, module, overrides, False, 3, critic, episodes)
    agent, opt, metrics = collect(env_id, module, overrides, True, 3, critic, episodes)
    ref_state, state = ref_opt.state_dict()["state"], opt.state_dict()["state"]
    params, ref_params = list(agent.parameters()), list(ref_agent.parameters())
    assert_same_training(params, state, metrics, ref_params, ref_state, ref_metrics, 2e-5, 1e-4, 1e-3, 1e-5)


def test_fused_sampling_draws_what_the_distribution_draws():
    for discrete in (True, False):
        agent = make_agent(discrete)
        obs = batch(agent, 500)[0]
        g = torch.Generator().manual_seed(3)
        noise = torch.rand(500, generator=g) if discrete else torch.randn(500, 3, generator=g)
        with torch.no_grad():
            actions, log_probs, values = agent.sample(obs, noise)
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
    obs = batch(agent, 1)[0].expand(20_000, -1)
    with torch.no_grad():
        actions, _, _ = agent.sample(obs, torch.rand(20_000, generator=torch.Generator().manual_seed(0)))
        probs = agent.distribution(obs[:1]).probs[0]
    freq = torch.bincount(actions, minlength=3).float() / 20_000
    assert torch.allclose(freq, probs, atol=0.015)


def test_policy_snapshot_follows_weight_changes():
    agent = make_agent(True)
    obs, noise = batch(agent, 16)[0], torch.rand(16)
    with torch.no_grad():
        before = agent.sample(obs, noise)[1]
        agent.actor[0].weight.mul_(1.5)  # an in-place change, as an optimiser step makes
        after = agent.sample(obs, noise)[1]
        torch.testing.assert_close(after, agent.distribution(obs).log_prob(agent.sample(obs, noise)[0]))
        assert not torch.equal(before, after)
        agent.load_state_dict(make_agent(True, seed=5).state_dict())
        torch.testing.assert_close(agent.sample(obs, noise)[2], agent.value(obs))


def test_unsupported_setups_fall_back_to_the_reference():
    elu = make_agent(activation="relu")
    elu.spec = AgentSpec(**{**elu.spec.to_dict(), "hidden_sizes": (16, 12), "activation": "elu"})
    assert fast.learner(elu, torch.optim.Adam(elu.parameters())) is None
    agent = make_agent()
    assert fast.learner(agent, torch.optim.SGD(agent.parameters(), lr=0.1)) is None
    assert fast.learner(agent, torch.optim.Adam(agent.parameters(), weight_decay=0.1)) is None
    assert fast.learner(agent, torch.optim.Adam(agent.parameters(), amsgrad=True)) is None
    assert fast.learner(agent, torch.optim.Adam(agent.actor.parameters())) is None
    assert fast.learner(agent, torch.optim.Adam(agent.parameters())) is not None
    agent.double()
    assert fast.learner(agent, torch.optim.Adam(agent.parameters())) is None and fast.policy(agent) is None


def test_non_finite_update_raises_and_leaves_the_weights_alone():
    envs, _ = make_envs("CartPole-v1", 4, "sync")
    agent = make_agent(True, obs_dim=4, actions=2)
    cfg = build_config(ppo.Config, dict(num_envs=4, rollout_steps=16, minibatch_size=16))
    optimizer = torch.optim.Adam(agent.parameters())
    collector = RolloutCollector(envs, agent, seed=0)
    collector.reset(list(range(4)))
    rollout = collector.collect(16, 0)
    rollout = Rollout(**{**vars(rollout), "rewards": rollout.rewards.clone().fill_(float("nan"))})
    before = [p.clone() for p in agent.parameters()]
    with pytest.raises(NonFiniteLossError):
        ppo.update(agent, optimizer, rollout, cfg, 0)
    assert all(torch.equal(p, q) for p, q in zip(before, agent.parameters(), strict=True))
    assert not optimizer.state or all(float(s["step"]) == 0 for s in optimizer.state.values())


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
    obs, noise = batch(agent, 16)[0], torch.rand(16)
    fused = fast.policy(agent)
    assert fused.owns(fast.agent_parameters(agent))
    with torch.no_grad():
        expected = agent.sample(obs, noise)
        twin = copy.deepcopy(agent)  # independent parameters, its own buffer
        buffer = io.BytesIO()
        torch.save(agent, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        for other in (twin, loaded):
            for got, want in zip(other.sample(obs, noise), expected, strict=True):
                assert torch.equal(got, want)
        twin.actor[0].weight.add_(1.0)
        assert torch.equal(agent.sample(obs, noise)[1], expected[1])
        assert not torch.equal(twin.sample(obs, noise)[1], expected[1])
        # Writes through .data bypass version counters: invalidate() makes the rollout re-read.
        agent.actor[0].weight.data.mul_(2.0)
        fast.invalidate(agent)
        torch.testing.assert_close(agent.sample(obs, noise)[2], agent.value(obs))
        torch.testing.assert_close(
            agent.sample(obs, noise)[1], agent.distribution(obs).log_prob(agent.sample(obs, noise)[0])
        )


@pytest.mark.parametrize("fused", [True, False])
def test_sampling_after_an_update_uses_the_new_weights(fused):
    from policygrad.optim import Adam

    agent = make_agent(True, obs_dim=4, actions=2)
    envs, _ = make_envs("CartPole-v1", 4, "sync")
    cfg = build_config(
        ppo.Config, dict(num_envs=4, rollout_steps=16, minibatch_size=16, learning_rate=0.05, fused=fused)
    )
    optimizer = Adam(agent.parameters(), lr=cfg.learning_rate)
    collector = RolloutCollector(envs, agent, seed=0)
    collector.reset(list(range(4)))
    obs, noise = batch(agent, 32)[0][:, :4], torch.rand(32)
    with torch.no_grad():
        before = agent.sample(obs, noise)[1]
    ppo.update(agent, optimizer, collector.collect(16, 0), cfg, 0)
    with torch.no_grad():
        actions, log_probs, values = agent.sample(obs, noise)
        assert not torch.equal(log_probs, before)
        torch.testing.assert_close(log_probs, agent.distribution(obs).log_prob(actions), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(values, agent.value(obs), atol=1e-5, rtol=1e-5)
