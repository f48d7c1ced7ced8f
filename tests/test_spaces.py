"""Observation and action spaces beyond flat Box → Discrete/Box: each learned to its known optimum.

Small envs whose optimum is known: a cue the policy must read (Discrete, Dict observations)
and answer with MultiDiscrete, MultiBinary or a Discrete action whose ``start`` is not 0, and
actions masked by the env (the environments are in ``space_envs``).
"""

import gymnasium as gym
import numpy as np
import pytest
from run_helpers import cli, kill_9_after
from space_envs import EPISODE, MaskedChoiceEnv  # importing it registers the policygrad-test/ ids
from test_checkpoint import assert_same_run, rows_without_time

import policygrad
from policygrad.envs import make_envs
from policygrad.errors import PolicygradError


@pytest.mark.parametrize(
    "env_id,algo,steps",
    [
        ("policygrad-test/CueBits-v0", "ppo", 40_000),
        ("policygrad-test/CueMulti-v0", "ppo", 40_000),
        ("policygrad-test/CueDictStart-v0", "a2c", 40_000),
    ],
)
def test_each_space_is_learned_to_its_optimum(tmp_path, env_id, algo, steps):
    agent, history = policygrad.train(algo, env_id, out=tmp_path / "run", seed=0, total_steps=steps, eval_every=0)
    # The optimum is EPISODE (= 5); a policy blind to the cue scores about half of it.
    assert policygrad.evaluate(tmp_path / "run", episodes=20)["mean_return"] >= 0.95 * EPISODE
    env = gym.make(env_id)
    obs, _ = env.reset(seed=3)
    action = agent.act(obs)  # a raw observation (an int, or a dict), an action of the env's own space
    assert env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype))
    assert env.unwrapped.score(action) == 1.0


def test_flattened_observations_and_the_policy_widths():
    envs, info = make_envs("policygrad-test/CueDictStart-v0", 2, "sync")
    obs, _ = envs.reset(seed=[0, 1])
    assert obs.shape == (2, 4 + 2) and info.obs_dim == 6  # the cue one-hot, then the 2 numbers
    assert info.action_kind == "discrete" and info.action_start == (-2,)
    _, bits = make_envs("policygrad-test/CueBits-v0", 1, "sync")
    assert bits.action_kind == "multi_binary" and bits.action_dim == 3
    _, multi = make_envs("policygrad-test/CueMulti-v0", 1, "sync")
    assert multi.action_kind == "multi_discrete" and multi.action_nvec == (4, 2) and multi.action_dim == 6


class TextEnv(gym.Env):
    observation_space = gym.spaces.Text(8)
    action_space = gym.spaces.Discrete(2)


gym.register("policygrad-test/Text-v0", entry_point=TextEnv)


@pytest.mark.parametrize(
    "env_id,message",
    [("policygrad-test/Text-v0", "observation space Text"), ("policygrad-test/DictAction-v0", "action space Dict")],
)
def test_spaces_it_cannot_serve_are_named_in_one_line(env_id, message):
    with pytest.raises(PolicygradError, match=message):
        make_envs(env_id, 1, "sync")


@pytest.mark.parametrize("env_id", ["policygrad-test/MaskedInfo-v0", "policygrad-test/MaskedMethod-v0"])
def test_masked_actions_are_never_taken_and_the_optimum_is_reached(tmp_path, env_id):
    MaskedChoiceEnv.INVALID = 0
    agent, _ = policygrad.train(
        "ppo", env_id, out=tmp_path / "run", seed=0, total_steps=30_000, eval_every=0, vectorization="sync"
    )
    assert agent.spec.masked
    assert policygrad.evaluate(tmp_path / "run", episodes=20)["mean_return"] >= 9.5
    assert MaskedChoiceEnv.INVALID == 0  # not in training's rollouts, not in evaluation


def test_masking_can_be_turned_off(tmp_path):
    agent, _ = policygrad.train(
        "a2c", "policygrad-test/MaskedInfo-v0", out=tmp_path / "run", total_steps=400, action_masking=False
    )
    assert not agent.spec.masked


# Masked and multi-part actions through the rest of the machinery: a run killed with SIGKILL resumes
# bit-exactly, and Ray rollouts equal local ones (the envs are imported by name in the other processes).
MASKED_AND_MULTI = ["space_envs:policygrad-test/MaskedInfo-v0", "space_envs:policygrad-test/CueMulti-v0"]


@pytest.mark.slow
@pytest.mark.parametrize("env_id", MASKED_AND_MULTI)
def test_masked_and_multi_discrete_runs_resume_bit_exactly(tmp_path, env_id):
    common = ["ppo", env_id, "--seed", "2", "--quiet", "--steps", "4096", "--num-envs", "4",
              "--set", "rollout_steps=32", "--set", "minibatch_size=64", "--set", "checkpoint_every=3",
              "--set", "eval_every=1024", "--set", "eval_episodes=2"]  # fmt: skip
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    assert cli("train", *common, "--out", reference).wait() == 0
    kill_9_after(cli("train", *common, "--out", crashed), crashed, rows=8)
    assert cli("resume", crashed, "--quiet", "--trust-run-folder").wait() == 0
    assert_same_run(reference, crashed)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", MASKED_AND_MULTI)
def test_masked_and_multi_discrete_runs_on_ray_equal_local_ones(tmp_path, env_id):
    pytest.importorskip("ray")
    from ray_helpers import RAY_ENV  # noqa: F401 - importing it sets Ray's environment variables here too

    common = ["a2c", env_id, "--seed", "1", "--quiet", "--steps", "1024", "--num-envs", "2",
              "--set", "rollout_steps=16", "--set", "eval_every=0"]  # fmt: skip
    assert cli("train", *common, "--out", tmp_path / "local").wait() == 0
    assert cli("train", *common, "--set", "backend=ray", "--out", tmp_path / "ray").wait() == 0
    assert rows_without_time(tmp_path / "local") == rows_without_time(tmp_path / "ray")
