"""Image observations: the flat vector cut back into images for a CNN, learned to the optimum, evaluated and resumed.

The environments are in ``pixel_envs`` (a 16×16 uint8 board with one bright cell of a 4×4
grid; the optimum is ``EPISODE``), importable as ``pixel_envs:EnvId`` so that ``policygrad eval``
and ``policygrad resume`` rebuild them.
"""

import json
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pixel_envs
import pytest
import torch
from run_helpers import cli, kill_9_after
from test_checkpoint import assert_same_run, rows_without_time

import policygrad
from policygrad import encoders, kernels, spaces
from policygrad.agent import Agent, AgentSpec
from policygrad.envs import make_envs
from policygrad.errors import PolicygradError
from policygrad.optim import Adam

TESTS = Path(__file__).resolve().parent
EPISODE = pixel_envs.EPISODE
#: Each step is its own contextual bandit: a short horizon keeps the other steps' luck out of the advantages.
FAST = {"learning_rate": 1e-3, "gamma": 0.5}


def image_agent(space: gym.Space, critic: bool = True) -> Agent:
    spec = AgentSpec(
        obs_dim=gym.spaces.flatdim(space), discrete=True, action_dim=4, hidden_sizes=(64, 64),
        activation="tanh", critic=critic, observation_space=spaces.to_json(space),
    )  # fmt: skip
    return Agent(spec)


@pytest.mark.parametrize(
    "shape,layout,conv_out",
    [
        ((16, 16, 3), "H×W×C", (64, 4, 4)),  # the small stack: 16 → 14 → 6 → 4
        ((3, 16, 16), "C×H×W", (64, 4, 4)),
        ((84, 84, 4), "H×W×C", (64, 7, 7)),  # Nature's stack: 84 → 20 → 9 → 7
        ((4, 84, 84), "C×H×W", (64, 7, 7)),
        ((6, 6, 1), "H×W×C", (64, 6, 6)),  # the tiny stack keeps the size
    ],
)
def test_images_are_cut_from_the_flat_vector_in_either_layout(shape, layout, conv_out):
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    assert spaces.is_image(space) and layout in encoders.describe(space)
    encoder = encoders.Encoder(space)
    image = space.sample()
    flat = torch.as_tensor(gym.spaces.flatten(space, image), dtype=torch.float32)
    chw = image if layout == "C×H×W" else image.transpose(2, 0, 1)
    expected_input = torch.as_tensor(chw.copy(), dtype=torch.float32)[None] / 255
    net = encoder.cnns[0]
    convs = net[:6]  # three conv + ReLU pairs
    assert convs(expected_input).shape[1:] == conv_out
    # The same convolutions on a permuted view may take another kernel: equal up to float32 rounding.
    torch.testing.assert_close(encoder(flat[None]), net(expected_input), rtol=1e-5, atol=1e-5)
    assert encoder(flat.expand(2, 3, -1)).shape == (2, 3, encoder.out_features)  # any leading dims


def test_a_dict_of_image_and_vector_is_encoded_in_flatten_order():
    space = gym.spaces.Dict(
        {"a_vec": gym.spaces.Box(-1.0, 1.0, (2,), np.float32), "b_img": gym.spaces.Box(0, 255, (8, 8, 1), np.uint8),
         "c_cue": gym.spaces.Discrete(3)}
    )  # fmt: skip
    encoder = encoders.Encoder(space)
    assert [p.image_shape for p in encoder.pieces] == [None, (8, 8, 1), None]
    obs = space.sample()
    flat = torch.as_tensor(gym.spaces.flatten(space, obs), dtype=torch.float32)[None]
    image = torch.as_tensor(obs["b_img"].transpose(2, 0, 1).copy(), dtype=torch.float32)[None] / 255
    cue = torch.nn.functional.one_hot(torch.tensor([int(obs["c_cue"])]), 3).float()
    expected = torch.cat([torch.as_tensor(obs["a_vec"])[None], encoder.cnns[0](image), cue], dim=-1)
    torch.testing.assert_close(encoder(flat), expected, rtol=1e-5, atol=1e-5)
    assert encoder.out_features == 2 + 256 + 3


def test_act_takes_raw_images_one_or_a_batch_and_the_space_round_trips():
    space = pixel_envs.image_space(3, channels_first=False)
    assert spaces.from_json(json.loads(json.dumps(spaces.to_json(space)))) == space
    assert spaces.to_json(space)["low"] == 0  # an image's bounds are stored as one number each
    agent = image_agent(space)
    one = pixel_envs.draw(5, 3, channels_first=False)
    assert isinstance(agent.act(one), int)
    assert agent.act(np.stack([one, one, one])).shape == (3,)


def test_the_fused_kernels_pass_over_image_agents_and_autograd_serves_them():
    agent = image_agent(pixel_envs.image_space(1, channels_first=True))
    optimizer = Adam(agent.parameters(), lr=1e-3, eps=1e-5)
    cfg = type("Cfg", (), {"learner": "auto", "clip_value_loss": False})()
    reasons = dict(kernels.candidates(agent, optimizer, cfg))
    assert all("image observations" in reasons[name] for name in ("numpy-mlp", "fused-mlp"))
    learner = kernels.select(agent, optimizer, cfg)
    assert learner.name == "autograd" and "image observations" in kernels.describe(learner)
    assert kernels.rollout_sampler(agent) is None
    cfg.learner = "fused-mlp"
    with pytest.raises(PolicygradError, match="image observations"):
        kernels.select(agent, optimizer, cfg)


def test_normalize_obs_on_images_is_refused_in_one_line():
    with pytest.raises(PolicygradError, match="normalize_obs would rescale image pixels"):
        make_envs("pixel_envs:PixelCell-v0", 1, "sync", normalize_obs=True)


@pytest.mark.parametrize(
    "env_id,algo,steps,blind",
    [
        ("pixel_envs:PixelCell-v0", "ppo", 16_000, EPISODE / 16),  # 16×16×3 H×W×C: name the cell
        ("pixel_envs:PixelDict-v0", "ppo", 36_000, 0.625 * EPISODE),  # Dict of a 1×16×16 C×H×W image and a task
    ],
)
def test_image_observations_are_learned_to_the_optimum(tmp_path, env_id, algo, steps, blind):
    run = tmp_path / "run"
    agent, _ = policygrad.train(algo, env_id, out=run, seed=0, total_steps=steps, eval_every=0, **FAST)
    assert json.loads((run / "summary.json").read_text())["learner"] == "autograd"
    # The optimum is EPISODE; a policy blind to the cell (or, for the Dict, to the task) scores at most `blind`.
    assert policygrad.evaluate(run, episodes=40)["mean_return"] >= 0.95 * EPISODE > blind
    env = gym.make(env_id)
    obs, _ = env.reset(seed=7)
    for _ in range(EPISODE):  # raw observations (an image, or a dict holding one) straight to act()
        assert agent.act(obs) == env.unwrapped.answer()
        obs, *_ = env.step(agent.act(obs))


def test_an_image_run_evaluates_and_a_killed_one_resumes_bit_exactly(tmp_path):
    common = ["ppo", "pixel_envs:PixelDict-v0", "--seed", "3", "--quiet", "--steps", "3072", "--num-envs", "4",
              "--set", "rollout_steps=64", "--set", "minibatch_size=64", "--set", "checkpoint_every=2",
              "--set", "eval_every=1024", "--set", "eval_episodes=2"]  # fmt: skip
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    assert cli("train", *common, "--out", reference).wait() == 0
    kill_9_after(cli("train", *common, "--out", crashed), crashed, rows=5)
    # A user's own env class is saved as a pickle (FlattenObservation's lambda rebuilt), read back when trusted.
    assert cli("resume", crashed, "--quiet", "--trust-run-folder").wait() == 0
    assert_same_run(reference, crashed)
    evaluated = cli("eval", reference, "--json", stdout=subprocess.PIPE, text=True)
    out, _ = evaluated.communicate()
    assert evaluated.returncode == 0 and json.loads(out)["episodes"] >= 1
    loaded = policygrad.load(reference)
    assert loaded.encoder is not None and loaded.act(gym.make("pixel_envs:PixelDict-v0").reset(seed=0)[0]) in range(4)


def test_an_image_run_on_ray_equals_the_local_one(tmp_path):
    pytest.importorskip("ray")
    from ray_helpers import RAY_ENV  # noqa: F401 - importing it sets Ray's environment variables here too

    common = ["ppo", "pixel_envs:PixelCell-v0", "--seed", "1", "--quiet", "--steps", "1024", "--num-envs", "2",
              "--set", "rollout_steps=128", "--set", "minibatch_size=128", "--set", "eval_every=0"]  # fmt: skip
    assert cli("train", *common, "--out", tmp_path / "local").wait() == 0
    assert cli("train", *common, "--set", "backend=ray", "--out", tmp_path / "ray").wait() == 0
    assert rows_without_time(tmp_path / "local") == rows_without_time(tmp_path / "ray")
