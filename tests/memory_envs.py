"""CartPole without its velocities, importable as ``memory_envs:CartPoleNoVel-v1`` (eval and resume rebuild it).

The observation keeps the cart's position and the pole's angle and drops both velocities
(as RL Zoo's ``MaskVelocityWrapper`` does for ``CartPoleNoVel-v1``, which zeroes them). One
observation then says where the pole is but not where it is going: a feed-forward policy
cannot balance it for long, a policy with memory can recover the velocities from two steps.
"""

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv

KEPT = [0, 2]  # cart position, pole angle


class CartPoleNoVelocity(gym.ObservationWrapper):
    """CartPole whose observation is (cart position, pole angle)."""

    def __init__(self, **kwargs):
        super().__init__(CartPoleEnv(**kwargs))
        high = self.env.observation_space.high[KEPT]
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)

    def observation(self, observation):
        return observation[KEPT]


gym.register("CartPoleNoVel-v1", entry_point=CartPoleNoVelocity, max_episode_steps=500, reward_threshold=475.0)
