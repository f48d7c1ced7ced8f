"""Observation and action spaces beyond flat Box → Discrete/Box: each learned to its known optimum.

Small envs whose optimum is known: a cue the policy must read (Discrete, Dict observations)
and answer with MultiDiscrete, MultiBinary or a Discrete action whose ``start`` is not 0.
"""

import gymnasium as gym
import numpy as np
import pytest

import policygrad
from policygrad.envs import make_envs
from policygrad.errors import PolicygradError

EPISODE = 5


class CueEnv(gym.Env):
    """Each step shows a cue c ∈ {0, 1, 2, 3}; the action is rewarded by :meth:`score`, at most 1 a step."""

    def __init__(self, observation: str = "discrete", action: str = "multi_binary") -> None:
        self.observation_kind, self.action_kind = observation, action
        if observation == "discrete":
            self.observation_space = gym.spaces.Discrete(4)
        else:  # a Dict: the cue one of its keys, beside a distracting vector
            self.observation_space = gym.spaces.Dict(
                {"cue": gym.spaces.Discrete(4), "noise": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)}
            )
        self.action_space = {
            "multi_binary": gym.spaces.MultiBinary(3),
            "multi_discrete": gym.spaces.MultiDiscrete([4, 2]),
            "discrete_start": gym.spaces.Discrete(4, start=-2),
        }[action]

    def _obs(self):
        if self.observation_kind == "discrete":
            return self.cue
        return {"cue": self.cue, "noise": self.np_random.uniform(-1, 1, 2).astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cue = 0, int(self.np_random.integers(4))
        return self._obs(), {}

    def score(self, action) -> float:
        if self.action_kind == "multi_binary":  # the cue's two bits, then a 1
            target = np.array([self.cue & 1, (self.cue >> 1) & 1, 1])
            return float(np.mean(np.asarray(action) == target))
        if self.action_kind == "multi_discrete":
            return 0.5 * float(int(action[0]) == self.cue) + 0.5 * float(int(action[1]) == 1)
        assert -2 <= int(action) <= 1, action  # the env sees the space's own values
        return float(int(action) == self.cue - 2)

    def step(self, action):
        reward = self.score(action)
        self.t += 1
        self.cue = int(self.np_random.integers(4))
        return self._obs(), reward, False, self.t >= EPISODE, {}


for name, kwargs in {
    "CueBits-v0": dict(action="multi_binary"),
    "CueMulti-v0": dict(action="multi_discrete"),
    "CueDictStart-v0": dict(observation="dict", action="discrete_start"),
}.items():
    gym.register(f"policygrad-test/{name}", entry_point=CueEnv, kwargs=kwargs)


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


class MaskedChoiceEnv(gym.Env):
    """Five actions, a random non-empty subset allowed each step (shown in the observation).

    The highest allowed action pays 1, another allowed one 0; a forbidden one costs 10 and ends the
    episode. Ten steps: the optimum is 10. ``INVALID`` counts the forbidden actions ever taken.
    """

    INVALID = 0
    observation_space = gym.spaces.Box(0.0, 1.0, (5,), np.float32)
    action_space = gym.spaces.Discrete(5)

    def __init__(self, via_info: bool = True) -> None:
        self.via_info = via_info

    def _draw(self):
        self.allowed = self.np_random.random(5) < 0.5
        self.allowed[self.np_random.integers(5)] = True
        info = {"action_mask": self.allowed.copy()} if self.via_info else {}
        return self.allowed.astype(np.float32), info

    def action_masks(self):  # the other convention (sb3-contrib's MaskablePPO reads this method)
        if self.via_info:
            raise AttributeError("this variant reports masks in info")
        return self.allowed.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw()

    def step(self, action):
        self.t += 1
        if not self.allowed[int(action)]:
            type(self).INVALID += 1
            return self.allowed.astype(np.float32), -10.0, True, False, {}
        reward = float(int(action) == int(np.flatnonzero(self.allowed).max()))
        obs, info = self._draw()
        return obs, reward, False, self.t >= 10, info


gym.register("policygrad-test/MaskedInfo-v0", entry_point=MaskedChoiceEnv, kwargs=dict(via_info=True))
gym.register("policygrad-test/MaskedMethod-v0", entry_point=MaskedChoiceEnv, kwargs=dict(via_info=False))


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
