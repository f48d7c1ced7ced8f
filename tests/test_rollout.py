"""Rollout collection: reset steps masked, terminated vs truncated, bootstrap from the true final observation."""

import numpy as np
import pytest
import torch

from policygrad.agent import Agent, AgentSpec
from policygrad.envs import make_envs
from policygrad.rollout import Rollout, RolloutCollector, action_noise
from policygrad.seeding import Stream, stream_seed


def make(env_id, num_envs=2, critic=True, discrete=True):
    envs, info = make_envs(env_id, num_envs, "sync")
    torch.manual_seed(0)
    agent = Agent(
        AgentSpec(
            obs_dim=info.obs_dim,
            discrete=info.discrete,
            action_dim=info.action_dim,
            hidden_sizes=(8,),
            activation="tanh",
            critic=critic,
            action_low=info.action_low,
            action_high=info.action_high,
        )
    )
    collector = RolloutCollector(envs, agent, seed=0)
    collector.reset(list(range(num_envs)))
    return collector, agent


def test_termination_masks_reset_step_and_does_not_bootstrap():
    collector, agent = make("policygrad-test/Terminating-v0", num_envs=1)
    r = collector.collect(8, update=0)
    # Episodes of 3 steps; NEXT_STEP autoreset makes step 3 (and 7) a reset step.
    assert r.mask[0].tolist() == [True, True, True, False, True, True, True, False]
    assert r.terminated[0].tolist() == [False, False, True, False, False, False, True, False]
    assert not r.truncated.any()
    assert r.observations[0, :, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert r.rewards[0].tolist() == [1, 1, 1, 0, 1, 1, 1, 0]
    # Step 2 terminates: its next value is V(final obs [3]) but terminated stops the bootstrap in gae.
    with torch.no_grad():
        v3 = agent.value(torch.tensor([[3.0]])).item()
    assert r.next_values[0, 2].item() == pytest.approx(v3)


def test_truncation_records_value_of_true_final_observation():
    collector, agent = make("policygrad-test/TimeLimited-v0", num_envs=2)
    r = collector.collect(7, update=0)
    assert r.truncated[:, 4].all() and not r.terminated.any()
    assert (~r.mask[:, 5]).all() and r.mask[:, 6].all()
    with torch.no_grad():
        v_final = agent.value(torch.tensor([[5.0]])).item()
        v_reset = agent.value(torch.tensor([[0.0]])).item()
    # The observation after the truncated step 4 is the final one, [5], not the reset one, [0].
    assert r.next_values[0, 4].item() == pytest.approx(v_final)
    assert v_final != pytest.approx(v_reset)


def test_collection_continues_across_calls():
    collector, _ = make("policygrad-test/TimeLimited-v0", num_envs=1)
    a = collector.collect(3, update=0)
    b = collector.collect(3, update=1)
    assert a.observations[0, :, 0].tolist() == [0, 1, 2]
    assert b.observations[0, :, 0].tolist() == [3, 4, 5]
    assert b.mask[0].tolist() == [True, True, False]


def test_episode_mode_plays_one_complete_episode_per_env():
    collector, _ = make("policygrad-test/Terminating-v0", num_envs=2)
    r = collector.collect_episodes(max_steps=50, update=0)
    assert r.rewards.shape == (2, 3)
    assert r.mask.all() and r.terminated[:, -1].all()


def test_episode_mode_cut_at_max_steps_counts_as_truncation():
    collector, _ = make("policygrad-test/TimeLimited-v0", num_envs=1)
    r = collector.collect_episodes(max_steps=3, update=0)
    assert r.rewards.shape == (1, 3) and r.truncated[0, -1] and not r.terminated.any()


def test_shapes_discrete_and_continuous():
    collector, _ = make("CartPole-v1", num_envs=3)
    r = collector.collect(4, update=0)
    assert r.observations.shape == (3, 4, 4) and r.actions.shape == (3, 4) and r.actions.dtype == torch.long
    collector, agent = make("Pendulum-v1", num_envs=2)
    r = collector.collect(4, update=0)
    assert r.observations.shape == (2, 4, 3) and r.actions.shape == (2, 4, 1) and r.log_probs.shape == (2, 4)
    # Log-probs from the hot path equal the distributions API's.
    with torch.no_grad():
        expected = agent.distribution(r.flat("observations")).log_prob(r.flat("actions"))
    torch.testing.assert_close(r.flat("log_probs"), expected)


def test_inverse_cdf_sampling_matches_categorical_law():
    torch.manual_seed(0)
    agent = Agent(AgentSpec(obs_dim=2, discrete=True, action_dim=3, hidden_sizes=(4,), activation="tanh", critic=False))
    with torch.no_grad():
        agent.actor[-1].bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
        agent.actor[-1].weight.zero_()
    obs = torch.zeros(200_000, 2)
    noise = torch.rand(200_000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        actions, log_probs, _ = agent.sample(obs, noise)
        probs = agent.distribution(obs[:1]).probs[0]
    freq = torch.bincount(actions, minlength=3).double() / len(actions)
    # Each frequency within 5 standard errors of its probability.
    se = (probs * (1 - probs) / len(actions)).sqrt().double()
    assert ((freq - probs.double()).abs() < 5 * se).all()
    torch.testing.assert_close(log_probs, probs.log()[actions])


def test_noise_depends_on_global_env_index_not_on_split():
    whole = action_noise(3, 7, range(6), 5, (), False)
    parts = torch.cat([action_noise(3, 7, range(0, 2), 5, (), False), action_noise(3, 7, range(2, 6), 5, (), False)])
    torch.testing.assert_close(whole, parts)
    assert not torch.equal(action_noise(3, 8, range(6), 5, (), False), whole)


def test_noise_is_one_generator_per_env_keyed_by_seed_update_and_index():
    def keyed(seed, update, env_index):
        return torch.Generator().manual_seed(stream_seed(seed, Stream.ACTION_NOISE, update, env_index))

    expected = torch.stack([torch.rand(5, generator=keyed(3, 17, i)) for i in range(8)])
    assert torch.equal(action_noise(3, 17, range(8), 5, (), False), expected)
    expected = torch.stack([torch.randn(5, 2, generator=keyed(3, 17, i)) for i in range(4, 8)])
    assert torch.equal(action_noise(3, 17, range(4, 8), 5, (2,), True), expected)


def test_shards_concatenate_to_the_single_process_rollout():
    whole, _ = make("CartPole-v1", num_envs=4)
    whole.reset([0, 1, 2, 3])
    full = whole.collect(20, update=0)
    shards = []
    for indices in ([0, 1], [2, 3]):
        envs, _ = make_envs("CartPole-v1", 2, "sync")
        collector = RolloutCollector(envs, whole.agent, seed=0, env_indices=indices)
        collector.reset(indices)
        shards.append(collector.collect(20, update=0))
    joined = Rollout.concat(shards)
    for name in ("observations", "actions", "log_probs", "rewards", "mask", "terminated", "truncated"):
        assert torch.equal(getattr(joined, name), getattr(full, name)), name
    assert np.isfinite(joined.values.numpy()).all()
