"""The settings that reproduce Stable-Baselines3 and its RL zoo: joint gradient clipping, linear schedules for the
learning rate and the clip range, clipped normalisers, PyTorch's default initialisation, and the MuJoCo presets."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from policygrad import env_state, kernels
from policygrad.agent import Agent, AgentSpec
from policygrad.algorithms import get_algorithm
from policygrad.config import build_config, list_presets, load_preset, remaining, scheduled
from policygrad.envs import ClippedNormalizeObservation, ClippedNormalizeReward, make_envs
from policygrad.errors import PolicygradError
from policygrad.learners import gradient_step
from policygrad.trainer import train

PPO = get_algorithm("ppo").Config


def pendulum_agent(**spec) -> Agent:
    torch.manual_seed(0)
    return Agent(AgentSpec(3, False, 1, (16, 16), "tanh", True, action_low=(-2.0,), action_high=(2.0,), **spec))


def loss_of(agent: Agent, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """A loss whose critic gradient dwarfs the actor's (as early in training), so the clipping rules differ."""
    log_probs, _, values = agent.evaluate(obs, actions)
    return -log_probs.mean() + 100.0 * (values - 10.0).square().mean()


def test_joint_clipping_is_clip_grad_norm_over_every_parameter():
    agent = pendulum_agent()
    obs, actions = torch.randn(32, 3), torch.randn(32, 1)
    joint, per_network, reference = copy.deepcopy(agent), copy.deepcopy(agent), copy.deepcopy(agent)
    norm = gradient_step(joint, torch.optim.SGD(joint.parameters(), lr=1.0), loss_of(joint, obs, actions), 0.5, True)
    gradient_step(
        per_network, torch.optim.SGD(per_network.parameters(), lr=1.0), loss_of(per_network, obs, actions), 0.5
    )
    loss_of(reference, obs, actions).backward()
    want_norm = nn.utils.clip_grad_norm_(list(reference.parameters()), 0.5)
    with torch.no_grad():
        for p in reference.parameters():
            p -= p.grad
    assert norm == pytest.approx(float(want_norm), rel=1e-5) and norm > 0.5
    for got, want in zip(joint.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want)
    # apart, the actor keeps its whole (small) step; jointly, the critic's norm shrinks it
    actor_moved = lambda a: (a.actor[0].weight - agent.actor[0].weight).norm()  # noqa: E731
    assert actor_moved(per_network) > 10 * actor_moved(joint)


def test_linear_schedules_decay_the_learning_rate_and_the_clip_range():
    cfg = build_config(PPO, dict(total_steps=1000, learning_rate=3e-4, clip_coef=0.2, anneal_lr=True, anneal_clip=True))
    for step, fraction in ((0, 1.0), (250, 0.75), (900, 0.1)):
        now = scheduled(cfg, step)
        assert now.learning_rate == pytest.approx(3e-4 * fraction) and now.clip_coef == pytest.approx(0.2 * fraction)
        assert remaining(step, 1000) == pytest.approx(fraction)
    only_lr = build_config(PPO, dict(total_steps=1000, anneal_lr=True))
    assert scheduled(only_lr, 500).clip_coef == only_lr.clip_coef
    constant = build_config(PPO, dict(total_steps=1000))
    assert scheduled(constant, 500) is constant


def test_a_run_steps_with_the_scheduled_clip_range(tmp_path):
    _, history = train(
        "ppo", "CartPole-v1", out=tmp_path / "run", total_steps=1024, num_envs=4, rollout_steps=64,
        minibatch_size=64, update_epochs=1, learning_rate=1e-3, clip_coef=0.2, anneal_clip=True, anneal_lr=True,
        eval_every=0, eval_episodes=1,
    )  # fmt: skip
    before = [0] + [row["env_step"] for row in history[:-1]]
    assert [row["clip_coef"] for row in history] == pytest.approx([0.2 * (1 - s / 1024) for s in before])
    assert [row["learning_rate"] for row in history] == pytest.approx([1e-3 * (1 - s / 1024) for s in before])


def test_clipped_normalisers_clip_what_the_plain_ones_return():
    plain, _ = make_envs("Pendulum-v1", 2, "sync", normalize_obs=True, normalize_reward=True)
    clipped, _ = make_envs(
        "Pendulum-v1", 2, "sync", normalize_obs=True, normalize_reward=True, clip_obs=0.5, clip_reward=0.2
    )
    obs_a, _ = plain.reset(seed=[0, 1])
    obs_b, _ = clipped.reset(seed=[0, 1])
    np.testing.assert_allclose(obs_b, np.clip(obs_a, -0.5, 0.5))
    rng, clipped_some = np.random.default_rng(0), [False, False]
    for _ in range(60):
        actions = rng.uniform(-2, 2, (2, 1)).astype(np.float32)
        obs_a, rew_a, *_ = plain.step(actions)
        obs_b, rew_b, *_ = clipped.step(actions)
        np.testing.assert_allclose(obs_b, np.clip(obs_a, -0.5, 0.5))
        np.testing.assert_allclose(rew_b, np.clip(rew_a, -0.2, 0.2))
        clipped_some = [clipped_some[0] or bool((abs(obs_a) > 0.5).any()), clipped_some[1] or (abs(rew_a) > 0.2).any()]
    assert all(clipped_some)  # both clips were exercised
    assert isinstance(clipped, ClippedNormalizeReward) and isinstance(clipped.env, ClippedNormalizeObservation)
    env_state.capture(clipped)  # the clipping wrappers are data: a checkpoint saves them without pickling
    plain.close(), clipped.close()


def test_a_loaded_agent_clips_its_normalised_observations_as_training_did():
    agent = pendulum_agent(normalize_obs=True, clip_obs=1.5)
    agent.obs_var.fill_(1.0)
    np.testing.assert_allclose(agent.normalize_observation(np.array([[3.0, -0.5, -9.0]])), [[1.5, -0.5, -1.5]])


def test_ortho_init_false_leaves_pytorchs_default_initialisation():
    ortho, default = pendulum_agent(), pendulum_agent(ortho_init=False)
    bound = 1 / np.sqrt(16)  # Kaiming-uniform with a = √5 and the bias: U(±1/√fan_in)
    out_ortho, out_default = ortho.actor[-1], default.actor[-1]
    assert out_ortho.weight.abs().max() < 0.02 and not out_ortho.bias.any()  # orthogonal, gain 0.01, zero bias
    assert 0.5 * bound < out_default.weight.abs().max() <= bound and out_default.bias.abs().max() > 0
    assert default.log_std.tolist() == ortho.log_std.tolist()


def test_the_fused_learners_serve_every_zoo_setting():
    cfg = build_config(
        PPO, dict(grad_clip="joint", ortho_init=False, anneal_lr=True, anneal_clip=True, normalize_obs=True,
                  clip_obs=10, normalize_reward=True, clip_reward=10, minibatch_size=64),
    )  # fmt: skip
    agent = pendulum_agent(ortho_init=False)
    assert kernels.select(agent, torch.optim.Adam(agent.parameters()), cfg).name == "fused-mlp"


@pytest.mark.parametrize(
    "key, value, message",
    [("grad_clip", "both", "per-network or joint"), ("clip_obs", "-1", "> 0 or none"), ("clip_reward", "0", "> 0")],
)
def test_bad_values_are_refused_in_one_line(key, value, message):
    with pytest.raises(PolicygradError, match=message):
        build_config(PPO, {key: value})


def test_mujoco_presets_carry_the_zoos_settings():
    assert {"HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5"} <= set(list_presets()["ppo"])
    cheetah = build_config(PPO, load_preset("ppo", "HalfCheetah-v5"))
    assert (cheetah.normalize_obs, cheetah.normalize_reward, cheetah.clip_obs, cheetah.clip_reward) == (
        True,
        True,
        10,
        10,
    )
    assert (cheetah.ortho_init, cheetah.init_log_std, cheetah.hidden_sizes) == (False, -2.0, (256, 256))
    assert cheetah.vf_coef == pytest.approx(2 * 0.58096)  # SB3's value loss has no ½
