"""Gymnasium's own wrappers named in the config (presets, ``--set wrappers=…``), and the extras' errors."""

import json
import subprocess
import sys

import gymnasium as gym
import pytest

import policygrad
from policygrad import batched_envs, env_source
from policygrad.algorithms.ppo import PPOConfig
from policygrad.config import build_config
from policygrad.errors import PolicygradError

STACK_2 = [{"name": "FrameStackObservation", "kwargs": {"stack_size": 2}}]


def test_wrappers_parse_from_json_or_bare_names():
    assert build_config(PPOConfig, {"wrappers": json.dumps(STACK_2)}).wrappers == STACK_2
    bare = build_config(PPOConfig, {"wrappers": "ClipAction, RescaleAction"})
    assert bare.wrappers == ["ClipAction", "RescaleAction"]
    assert build_config(PPOConfig, {}).wrappers is None


def test_wrappers_are_applied_in_order_by_gymnasium_and_keep_off_the_batched_replica():
    key = env_source.resolve("CartPole-v1", None, [{"name": "ClipReward", "kwargs": {"max_reward": 0.5}}, *STACK_2])
    env = gym.make(key)
    assert isinstance(env, gym.wrappers.FrameStackObservation) and isinstance(env.env, gym.wrappers.ClipReward)
    assert env.observation_space.shape == (2, 4)
    assert env.step(env.reset(seed=0) and 0)[1] == 0.5  # CartPole's reward 1, clipped
    # The numpy replica of CartPole has no wrappers: a wrapped CartPole runs in Gymnasium's envs.
    assert batched_envs.has_replica("CartPole-v1") and not batched_envs.has_replica(key)
    assert env_source.resolve("CartPole-v1", None, STACK_2) == env_source.resolve("CartPole-v1", None, STACK_2)


def test_a_wrapped_run_trains_evaluates_and_records_its_wrappers(tmp_path):
    agent, _ = policygrad.train(
        "a2c", "CartPole-v1", out=tmp_path / "run", total_steps=800, eval_every=0, eval_episodes=2, wrappers=STACK_2
    )
    assert agent.spec.obs_dim == 8  # two stacked CartPole observations
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["wrappers"] == STACK_2
    assert policygrad.load(tmp_path / "run").spec.obs_dim == 8
    assert policygrad.evaluate(tmp_path / "run", episodes=2)["episodes"] == 2  # eval rebuilds the wrapped env


@pytest.mark.parametrize(
    "wrappers,message",
    [
        ('["FrameStack"]', "unknown wrapper 'FrameStack'.*FrameStackObservation"),
        ('["vector"]', "unknown wrapper 'vector'"),  # a module of gymnasium.wrappers, not a wrapper
        ('[{"name": "ClipReward", "kwargs": 3}]', "kwargs must be an object"),
    ],
)
def test_bad_wrappers_get_one_clear_line(tmp_path, wrappers, message):
    with pytest.raises(PolicygradError, match=message):
        env_source.resolve("CartPole-v1", None, json.loads(wrappers))
    done = subprocess.run(
        [sys.executable, "-m", "policygrad.cli", "train", "a2c", "CartPole-v1", "--steps", "100",
         "--set", f"wrappers={wrappers}", "--out", str(tmp_path / "run")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "policygrad: error:" in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_extra_each_environment_family_needs_is_named():
    assert env_source.extra_for("HalfCheetah-v5") == "mujoco"
    assert env_source.extra_for("LunarLander-v3") == "box2d"
    assert env_source.extra_for("ALE/Breakout-v5") == "atari"
    assert env_source.extra_for("CartPole-v1") is None


@pytest.mark.slow
def test_the_atari_preset_builds_the_nature_pipeline_and_trains(tmp_path):
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    # The preset's env kwargs, with episodes cut at 400 frames: an untrained policy that never serves the
    # ball would otherwise play the final evaluation to Breakout's 108,000-frame limit.
    short = {"frameskip": 1, "repeat_action_probability": 0.0, "max_num_frames_per_episode": 400}
    agent, _ = policygrad.train(
        "ppo",
        "ALE/Breakout-v5",
        out=tmp_path / "run",
        total_steps=1024,
        eval_every=0,
        eval_episodes=1,
        env_kwargs=short,
    )
    assert agent.encoder is not None and agent.spec.obs_dim == 4 * 84 * 84  # 4 stacked 84×84 grayscale frames
