"""A slow environment for the benchmarks: any env whose every step burns a fixed amount of CPU.

Cheap environments like CartPole (a few microseconds per step) gain nothing from Ray: the
weight broadcast and the gather cost more than the stepping. Real simulators often take a
millisecond or more per step; :class:`SlowEnv` makes CartPole behave like one, with the
same dynamics and randomness, so the benefit of more workers can be measured honestly
(run from this folder, or with it on ``sys.path``)::

    from slow_env import register_slow_cartpole
    env_id = register_slow_cartpole(step_cpu_seconds=0.001)   # "policygrad/SlowCartPole-v1"
    policygrad.train("ppo", env_id, backend="ray", workers=2)

It is not part of the package: Ray workers cannot import this module, so registering the
env also asks Ray (when installed) to send this module's code to them by value.

The time is burnt as CPU work of the calling thread (busy-waiting on ``time.thread_time``),
not as a sleep: a sleeping env would overlap on a single core and overstate the speedup.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import gymnasium as gym

SLOW_CARTPOLE = "policygrad/SlowCartPole-v1"


def burn_cpu(seconds: float) -> None:
    """Keep this thread busy for ``seconds`` of its own CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class SlowEnv(gym.Wrapper):
    """Wraps an env; every ``step`` first burns ``step_cpu_seconds`` of CPU. Results are unchanged."""

    def __init__(self, env: gym.Env, step_cpu_seconds: float = 0.001) -> None:
        super().__init__(env)
        self.step_cpu_seconds = step_cpu_seconds

    def step(self, action: Any) -> Any:
        burn_cpu(self.step_cpu_seconds)
        return self.env.step(action)


def make_slow_cartpole(step_cpu_seconds: float = 0.001, **kwargs: Any) -> gym.Env:
    """CartPole-v1's dynamics with ``step_cpu_seconds`` of CPU per step (the registered entry point)."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    return SlowEnv(CartPoleEnv(**kwargs), step_cpu_seconds)


def register_slow_cartpole(step_cpu_seconds: float = 0.001, env_id: str = SLOW_CARTPOLE) -> str:
    """Register (or re-register) the slow CartPole under ``env_id``, with CartPole-v1's 500-step limit."""
    try:
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this module
    except ImportError:
        pass
    gym.register(
        env_id,
        entry_point=make_slow_cartpole,
        kwargs={"step_cpu_seconds": step_cpu_seconds},
        max_episode_steps=500,
    )
    return env_id
