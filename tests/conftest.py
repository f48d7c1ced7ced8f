"""Small environments registered for the tests (they exercise episode boundaries exactly)."""

import gymnasium as gym
import numpy as np
import pytest


class StepCounterEnv(gym.Env):
    """Observation = [steps so far]; reward 1 per step; terminates after ``terminate_at`` steps (if given).

    ``constant_obs`` hides the step count (the observation is always [0]), so a critic
    cannot know how close a time limit is.
    """

    def __init__(self, terminate_at: int | None = None, constant_obs: bool = False, reward: float = 1.0):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.terminate_at = terminate_at
        self.constant_obs = constant_obs
        self.reward = reward
        self.t = 0

    def _obs(self):
        return np.array([0.0 if self.constant_obs else float(self.t)], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return self._obs(), self.reward, terminated, False, {}


class DictActionEnv(StepCounterEnv):
    """Dict actions: a space policygrad refuses, in one line."""

    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Dict({"move": gym.spaces.Discrete(2)})


TEST_ENVS = {
    "policygrad-test/Terminating-v0": (dict(terminate_at=3), 100),
    "policygrad-test/TimeLimited-v0": (dict(), 5),
    "policygrad-test/ConstantTimeLimited-v0": (dict(constant_obs=True), 5),
    "policygrad-test/NaNReward-v0": (dict(reward=float("nan")), 50),
}

for env_id, (kwargs, limit) in TEST_ENVS.items():
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=StepCounterEnv, kwargs=kwargs, max_episode_steps=limit)
if "policygrad-test/DictAction-v0" not in gym.registry:
    gym.register("policygrad-test/DictAction-v0", entry_point=DictActionEnv, max_episode_steps=10)


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sum_reference(tmp_path_factory):
    """A small reference model for the 'sum' task (60 pretraining steps), shared by the lm tests."""
    from policygrad.cli import main

    out = tmp_path_factory.mktemp("ref") / "sum"
    assert (
        main(["lm", "pretrain", "sum", "--out", str(out), "--steps", "60", "--quiet", "--set", "eval_prompts=64"]) == 0
    )
    return out
