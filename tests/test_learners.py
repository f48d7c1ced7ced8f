"""Every algorithm × learner: the fast learners take exactly the autograd learner's steps.

Each algorithm module runs its own update (advantages, epochs, minibatches, early stop)
over a learner; here the same rollouts are given to the same algorithm over the autograd
reference and over each kernel, from the same initial state, and the parameters, Adam's
state and every metric must agree to float32 rounding after several updates.
"""

import copy

import pytest
import torch

from policygrad import kernels
from policygrad.agent import Agent, AgentSpec
from policygrad.algorithms import get_algorithm
from policygrad.config import LEARNERS, build_config
from policygrad.envs import make_envs
from policygrad.errors import NonFiniteLossError, PolicygradError
from policygrad.kernels.fused_mlp import FusedMLPLearner, fused_form
from policygrad.kernels.small_batch import NumpyMLPLearner
from policygrad.learners import AutogradLearner, Batch, LossTerms
from policygrad.rollout import Rollout, RolloutCollector

LEARNER_CLASSES = {"autograd": AutogradLearner, "fused-mlp": FusedMLPLearner, "numpy-mlp": NumpyMLPLearner}
UPDATES = 3
# float32 rounding differs between the paths (the order of sums, tanh's form, numpy's BLAS):
# after a few Adam steps the parameters agree to ~1e-6 relative, the metrics to ~1e-5.
PARAM_RTOL, PARAM_ATOL = 1e-5, 1e-6
METRIC_RTOL, METRIC_ATOL = 1e-5, 1e-6

# Small layouts, so that the numpy learner's ≤ 64-sample steps are exercised for the one-step algorithms.
CASES = {
    "reinforce": dict(max_episode_steps=12),
    "reinforce-baseline": dict(max_episode_steps=12, ent_coef=0.01),
    "actor-critic": dict(rollout_steps=8, ent_coef=0.01),
    "a2c": dict(rollout_steps=5, ent_coef=0.01, normalize_advantages=True),
    "ppo": dict(rollout_steps=16, minibatch_size=16, update_epochs=3, learning_rate=3e-3, ent_coef=0.01),
}


def rollouts_and_agent(algo: str, env_id: str, overrides: dict):
    """An agent, its config, and UPDATES rollouts collected by it before any update (so every learner sees them)."""
    module = get_algorithm(algo)
    cfg = build_config(module.Config, dict(env_id=env_id, num_envs=4, **overrides))
    envs, info = make_envs(env_id, 4, "sync")
    torch.manual_seed(0)
    spec = AgentSpec(
        info.obs_dim, info.discrete, info.action_dim, (32, 32), "tanh", module.USES_CRITIC, -0.5,
        info.action_low, info.action_high,
    )  # fmt: skip
    agent = Agent(spec)
    collector = RolloutCollector(envs, agent, seed=0)
    collector.reset(list(range(4)))
    with torch.no_grad():
        rollouts = [
            collector.collect_episodes(cfg.max_episode_steps, u)
            if module.COLLECT == "episodes"
            else collector.collect(cfg.rollout_steps, u)
            for u in range(UPDATES)
        ]
    envs.close()
    return module, cfg, agent, rollouts


def train_with(learner_name: str, module, cfg, agent: Agent, rollouts: list[Rollout]):
    agent = copy.deepcopy(agent)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    learner = LEARNER_CLASSES[learner_name](agent, optimizer)
    metrics = [module.update(learner, rollout, cfg, u) for u, rollout in enumerate(rollouts)]
    return agent, optimizer, metrics


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("learner_name", ["fused-mlp", "numpy-mlp"])
@pytest.mark.parametrize("algo", list(CASES))
def test_every_learner_takes_the_autograd_learners_steps(algo, learner_name, env_id):
    module, cfg, agent, rollouts = rollouts_and_agent(algo, env_id, CASES[algo])
    assert_same_steps(learner_name, module, cfg, agent, rollouts)


@pytest.mark.parametrize("learner_name", ["fused-mlp", "numpy-mlp"])
@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_every_learner_clips_the_joint_gradient_norm_as_the_autograd_learner(algo, learner_name):
    # max_grad_norm small enough that every step is clipped, so the joint rule is what is compared
    overrides = dict(CASES[algo], grad_clip="joint", max_grad_norm=0.05)
    module, cfg, agent, rollouts = rollouts_and_agent(algo, "Pendulum-v1", overrides)
    metrics = assert_same_steps(learner_name, module, cfg, agent, rollouts)
    assert all(m["grad_norm"] > 0.05 for m in metrics)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_the_fused_learner_takes_the_clipped_value_loss_steps(env_id):
    # a clip small enough that the critic's steps leave it within the epochs, so both branches are compared
    overrides = dict(CASES["ppo"], clip_value_loss=True, clip_coef=0.02)
    module, cfg, agent, rollouts = rollouts_and_agent("ppo", env_id, overrides)
    ref_agent, _, _ = train_with("autograd", module, cfg, agent, rollouts)
    plain = build_config(module.Config, {**vars(cfg), "clip_value_loss": False})
    plain_agent, _, _ = train_with("autograd", module, plain, agent, rollouts)
    assert not torch.allclose(ref_agent.critic[0].weight, plain_agent.critic[0].weight, rtol=1e-3)  # clipping bit
    assert_same_steps("fused-mlp", module, cfg, agent, rollouts)


def assert_same_steps(learner_name, module, cfg, agent, rollouts) -> list[dict]:
    """Train copies of ``agent`` on ``rollouts`` with the autograd learner and ``learner_name``: the same steps."""
    ref_agent, ref_opt, ref_metrics = train_with("autograd", module, cfg, agent, rollouts)
    got_agent, got_opt, got_metrics = train_with(learner_name, module, cfg, agent, rollouts)
    for (name, got), want in zip(got_agent.named_parameters(), ref_agent.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=PARAM_RTOL, atol=PARAM_ATOL, msg=name)
    ref_state, got_state = ref_opt.state_dict()["state"], got_opt.state_dict()["state"]
    for key, want in ref_state.items():
        assert float(got_state[key]["step"]) == float(want["step"])
        torch.testing.assert_close(got_state[key]["exp_avg"], want["exp_avg"], rtol=PARAM_RTOL, atol=PARAM_ATOL)
    for got, want in zip(got_metrics, ref_metrics, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=METRIC_RTOL, abs=METRIC_ATOL), key
    assert ("value_loss" in ref_metrics[0]) == module.USES_CRITIC  # with and without a critic
    if learner_name == "numpy-mlp" and module.Config.__name__ != "PPOConfig":  # the numpy step really ran
        assert fused_form(got_agent)[0].numpy_views is not None
    return ref_metrics


def test_ppo_target_kl_stops_the_same_epoch_on_every_learner():
    overrides = dict(CASES["ppo"], update_epochs=6, target_kl=1e-4)
    module, cfg, agent, rollouts = rollouts_and_agent("ppo", "CartPole-v1", overrides)
    epochs = {
        name: [m["epochs"] for m in train_with(name, module, cfg, agent, rollouts)[2]] for name in LEARNER_CLASSES
    }
    assert epochs["fused-mlp"] == epochs["numpy-mlp"] == epochs["autograd"]
    assert min(epochs["autograd"]) < 6  # the early stop happened


@pytest.mark.parametrize("learner_name", list(LEARNER_CLASSES))
def test_a_non_finite_step_raises_and_leaves_the_weights_alone(learner_name):
    module, cfg, agent, rollouts = rollouts_and_agent("a2c", "CartPole-v1", CASES["a2c"])
    rollout = Rollout(**{**vars(rollouts[0]), "rewards": rollouts[0].rewards.clone().fill_(float("nan"))})
    optimizer = torch.optim.Adam(agent.parameters())
    before = [p.detach().clone() for p in agent.parameters()]
    with pytest.raises(NonFiniteLossError):
        module.update(LEARNER_CLASSES[learner_name](agent, optimizer), rollout, cfg, 0)
    assert all(torch.equal(p, q) for p, q in zip(before, agent.parameters(), strict=True))
    assert all(float(s["step"]) == 0 for s in optimizer.state.values())


def test_select_takes_the_fastest_learner_that_serves_and_says_why_it_passed_others_over():
    module, cfg, agent, _ = rollouts_and_agent("a2c", "CartPole-v1", CASES["a2c"])
    optimizer = torch.optim.Adam(agent.parameters())
    assert kernels.select(agent, optimizer, cfg).name == "numpy-mlp"  # 4 × 5 samples per step
    big = build_config(module.Config, dict(num_envs=16, rollout_steps=8))
    learner = kernels.select(agent, optimizer, big)
    assert learner.name == "fused-mlp" and "64 samples" in kernels.describe(learner)
    ppo = get_algorithm("ppo")
    clipped_values = build_config(
        ppo.Config, dict(num_envs=4, rollout_steps=16, minibatch_size=64, clip_value_loss=True)
    )
    assert kernels.select(agent, optimizer, clipped_values).name == "fused-mlp"
    forced = build_config(module.Config, dict(learner="autograd"))
    assert kernels.select(agent, optimizer, forced).name == "autograd"
    assert kernels.rollout_sampler(agent, "autograd") is None and kernels.rollout_sampler(agent) is not None
    with pytest.raises(PolicygradError, match="clipped objective"):
        kernels.select(agent, optimizer, build_config(ppo.Config, dict(learner="numpy-mlp", minibatch_size=64)))
    sgd = torch.optim.SGD(agent.parameters(), lr=0.1)
    assert "SGD" in kernels.describe(kernels.select(agent, sgd, cfg))
    assert set(kernels.LEARNERS) == set(LEARNERS)


def test_unsupported_agents_and_optimizers_are_passed_over():
    module, cfg, agent, _ = rollouts_and_agent("a2c", "CartPole-v1", CASES["a2c"])
    for optimizer in (
        torch.optim.Adam(agent.parameters(), weight_decay=0.1),
        torch.optim.Adam(agent.parameters(), amsgrad=True),
        torch.optim.Adam(agent.actor.parameters()),
    ):
        assert kernels.select(agent, optimizer, cfg).name == "autograd"
    elu = Agent(AgentSpec(**{**agent.spec.to_dict(), "hidden_sizes": (8,), "activation": "elu"}))
    assert kernels.select(elu, torch.optim.Adam(elu.parameters()), cfg).name == "autograd"
    agent.double()
    assert kernels.select(agent, torch.optim.Adam(agent.parameters()), cfg).name == "autograd"


def test_the_learner_step_by_hand_on_one_minibatch():
    """One clipped-surrogate step: the fused gradient step moves the parameters as autograd's does."""
    _, _, agent, rollouts = rollouts_and_agent("ppo", "CartPole-v1", CASES["ppo"])
    batch = Batch.of(rollouts[0], torch.randn(4, 16), torch.randn(4, 16))
    old = batch.old_log_probs + 0.5 * torch.randn(len(batch))  # ratios away from 1: both sides of the clip
    batch = Batch(**{**vars(batch), "old_log_probs": old})
    terms = LossTerms(vf_coef=0.7, ent_coef=0.05, max_grad_norm=0.5, clip_coef=0.2)
    results = {}
    for name in ("autograd", "fused-mlp"):
        twin = copy.deepcopy(agent)
        metrics = LEARNER_CLASSES[name](twin, torch.optim.Adam(twin.parameters(), lr=1e-2)).step(batch, terms)
        results[name] = (metrics, [p.detach().clone() for p in twin.parameters()])
    assert 0.1 < results["autograd"][0].clip_fraction < 0.9
    for got, want in zip(results["fused-mlp"][1], results["autograd"][1], strict=True):
        torch.testing.assert_close(got, want, rtol=PARAM_RTOL, atol=PARAM_ATOL)
    for key, value in results["autograd"][0].as_dict().items():
        assert results["fused-mlp"][0].as_dict()[key] == pytest.approx(value, rel=METRIC_RTOL, abs=METRIC_ATOL)
