"""Small environments with a known optimum for the space tests, importable as ``space_envs:EnvId``.

Importable (not only registered inside a test file) so that ``policygrad eval``, ``resume`` and
Ray workers, which run in other processes, rebuild them.

- ``CueEnv``: each step shows a cue the policy must read (Discrete or Dict observations) and
  answer with MultiDiscrete, MultiBinary or a Discrete action whose ``start`` is not 0.
- ``MaskedChoiceEnv``: a random subset of five actions allowed each step, reported as
  ``info["action_mask"]`` or by an ``action_masks()`` method.
"""

import gymnasium as gym
import numpy as np

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
