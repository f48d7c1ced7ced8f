"""Sharded collection without Ray: shards concatenated in env order equal the single-process rollout, bit for bit."""

import collections
import time
from dataclasses import fields

import numpy as np
import pytest
import torch

from policygrad.agent import Agent, AgentSpec
from policygrad.distributed.shards import (
    FullWidthAgent,
    ShardCollector,
    make_shard_envs,
    merge_episode_logs,
    pad_steps,
    shard_ranges,
)
from policygrad.envs import make_envs
from policygrad.errors import PolicygradError
from policygrad.rollout import Rollout, RolloutCollector


def _agent(env_id="CartPole-v1", critic=True, policy="mlp"):
    _, info = make_envs(env_id, 1)
    torch.manual_seed(0)
    return Agent(
        AgentSpec(
            obs_dim=info.obs_dim,
            discrete=info.discrete,
            action_dim=info.action_dim,
            hidden_sizes=(64, 64),
            activation="tanh",
            critic=critic,
            action_low=info.action_low,
            action_high=info.action_high,
            policy=policy,
            lstm_hidden_size=16,
        )
    )


def test_shard_ranges_are_contiguous_and_balanced():
    assert shard_ranges(8, 3) == [range(0, 3), range(3, 6), range(6, 8)]
    assert shard_ranges(4, 4) == [range(i, i + 1) for i in range(4)]
    assert [len(r) for r in shard_ranges(10, 4)] == [3, 3, 2, 2]
    with pytest.raises(ValueError):
        shard_ranges(2, 3)


@pytest.mark.parametrize(
    "env_id, episodes, workers, policy",
    [
        ("CartPole-v1", False, 3, "mlp"),
        ("CartPole-v1", False, 8, "mlp"),
        ("CartPole-v1", True, 3, "mlp"),
        ("Pendulum-v1", False, 3, "mlp"),
        ("Pendulum-v1", True, 2, "mlp"),
        # the LSTM state each shard carries from rollout to rollout, and its initial_state / episode_starts
        ("CartPole-v1", False, 3, "lstm"),
        ("CartPole-v1", True, 3, "lstm"),
        ("Pendulum-v1", False, 2, "lstm"),
    ],
)
def test_shards_equal_single_process_rollouts_and_episode_statistics(env_id, episodes, workers, policy):
    num_envs, updates = 8, 4 if episodes else 40
    agent = _agent(env_id, critic=not episodes, policy=policy)
    envs, _ = make_envs(env_id, num_envs)
    local = RolloutCollector(envs, agent, seed=3)
    local.reset([3 + i for i in range(num_envs)])
    ranges = shard_ranges(num_envs, workers)
    shards = [ShardCollector(make_shard_envs(env_id, r), agent, 3, r, num_envs) for r in ranges]
    for shard, r in zip(shards, ranges, strict=True):
        shard.reset([3 + i for i in r])
    returns = collections.deque(maxlen=20)
    for update in range(updates):
        if episodes:
            whole = local.collect_episodes(210, update)
            parts = [s.collect_episodes(210, update) for s in shards]
        else:
            whole = local.collect(9, update)
            parts = [s.collect(9, update) for s in shards]
        length = max(p.rewards.shape[1] for p in parts)
        joined = Rollout.concat([pad_steps(p, length) for p in parts])
        for f in fields(Rollout):
            got, want = getattr(joined, f.name), getattr(whole, f.name)
            assert (got is None and want is None) or torch.equal(got, want), (update, f.name)
        returns.extend(merge_episode_logs([s.episode_log for s in shards]))
        assert list(returns) == list(zip(local.recent_returns, local.recent_lengths, strict=True)), update
    assert len(returns) > 0
    if policy == "lstm" and not episodes:  # the states carried into the next rollout, too (episodes reset them)
        assert joined.initial_state.abs().sum() > 0
        assert np.array_equal(np.concatenate([s.memory for s in shards]), local.memory)
        assert np.array_equal(np.concatenate([s.episode_start for s in shards]), local.episode_start)


def test_small_batches_round_differently_which_full_width_evaluation_avoids():
    # Why FullWidthAgent exists: on CPU, a 1-row matmul does not always round like the same row in an 8-row one.
    agent = _agent()
    obs = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)) * 3
    noise = torch.rand(8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, whole, values = agent.sample(obs, noise)
        rows = [agent.sample(obs[i : i + 1], noise[i : i + 1])[1] for i in range(8)]
        wide = [FullWidthAgent(agent, [i], 8).sample(obs[i : i + 1], noise[i : i + 1]) for i in range(8)]
    assert torch.equal(torch.cat([w[1] for w in wide]), whole)
    assert torch.equal(torch.cat([w[2] for w in wide]), values)
    # The narrow evaluation is the same up to rounding only (if it were exact here, FullWidthAgent would be moot
    # on this machine, not wrong).
    torch.testing.assert_close(torch.cat(rows), whole)


def test_episode_mode_padding_is_zero_and_statistics_count_only_real_episodes():
    envs, _ = make_envs("CartPole-v1", 6)
    collector = RolloutCollector(envs, _agent(critic=True), seed=0)
    for update in range(3):
        r = collector.collect_episodes(500, update)
        ends = r.done.int().argmax(1)  # each row's one episode ends at its first done step
        steps = torch.arange(r.rewards.shape[1])
        assert torch.equal(r.mask, steps[None] <= ends[:, None]) and r.done[r.mask].sum() == 6
        padding = ~r.mask
        for f in fields(Rollout):
            if f.name != "mask" and getattr(r, f.name) is not None:
                assert not getattr(r, f.name)[padding].any(), f.name
        assert r.next_values[torch.arange(6), ends].ne(0).all()  # V(final obs) of truncated ends is kept
        assert len(collector.recent_returns) == min(20, 6 * (update + 1))  # padding episodes are not counted
        assert sorted(collector.recent_lengths)[-6:] and all(n > 0 for n in collector.recent_lengths)


def test_episode_mode_depends_only_on_seed_update_and_env_index():
    # Env 2 plays the same episode whatever the other envs did before.
    a = RolloutCollector(make_envs("CartPole-v1", 3)[0], _agent(critic=False), seed=0)
    b = RolloutCollector(make_envs("CartPole-v1", 1)[0], _agent(critic=False), seed=0, env_indices=[2])
    a.collect_episodes(500, 0)  # a's envs have run one more batch than b's
    ra, rb = a.collect_episodes(500, 1), b.collect_episodes(500, 1)
    n = int(rb.mask.sum())
    assert torch.equal(ra.observations[2, :n], rb.observations[0, :n]) and int(ra.mask[2].sum()) == n


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--workers", "9"], "--workers 9 needs at least as many environments (num_envs = 8)"),
        (["--set", "normalize_obs=true"], "--backend ray does not support normalize_obs"),
        (["--set", "vectorization=native"], "vectorization=native shares one random generator"),
        (["--worker-cpus", "0"], "invalid worker_cpus = 0.0: allowed > 0"),
    ],
)
def test_ray_options_are_checked_before_ray_starts(extra, expected, capsys, tmp_path):
    from policygrad.cli import main

    code = main(
        ["train", "a2c", "CartPole-v1", "--backend", "ray", "--num-envs", "8", "--out", str(tmp_path / "r"), *extra]
    )
    err = capsys.readouterr().err
    assert code == 1 and expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_ray_backend_without_ray_installed_says_how_to_install(monkeypatch, capsys, tmp_path):
    import sys

    from policygrad.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if Ray were not installed
    code = main(["train", "a2c", "CartPole-v1", "--backend", "ray", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'policygrad[ray]'" in err and len(err.strip().splitlines()) == 1, err


def test_an_unreachable_ray_address_fails_in_seconds_with_one_line():
    from policygrad.distributed.ray_workers import check_reachable

    start = time.monotonic()
    with pytest.raises(PolicygradError, match=r"could not reach the Ray cluster at '127\.0\.0\.1:1' .*head"):
        check_reachable("127.0.0.1:1")
    with pytest.raises(PolicygradError, match=r"--ray-address 'garbage' is not auto or HOST:PORT"):
        check_reachable("garbage")
    check_reachable("auto")  # left to Ray
    assert time.monotonic() - start < 10
