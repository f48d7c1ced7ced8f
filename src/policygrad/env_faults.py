"""An environment's faults as one line: which env index, which step, what went wrong.

:class:`GuardedCollector` wraps the trainer's rollout backend. An exception raised inside a
synchronous vector env's ``step``/``reset`` becomes a :class:`EnvFault` naming the env
index (read from the vector env's own loop) and the step of its episode; an observation
of the wrong shape names the env and both shapes; a non-finite observation or reward,
checked once per rollout (not per step), names the env and the step of the update — not
a NaN loss with advice about the learning rate.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policygrad.errors import PolicygradError


class EnvFault(PolicygradError):
    """An environment failed; training stopped and the run's last checkpoint is kept."""


def _elapsed(env: Any) -> int | None:
    while env is not None:
        if hasattr(env, "_elapsed_steps"):
            return env._elapsed_steps
        env = getattr(env, "env", None)
    return None


def describe(err: BaseException) -> str | None:
    """What an exception raised inside a synchronous vector env says about the env, or None if it was not one."""
    tb, sync, index, phase = err.__traceback__, None, None, "step"
    while tb is not None:
        frame = tb.tb_frame
        if isinstance(frame.f_locals.get("self"), gym.vector.SyncVectorEnv) and frame.f_code.co_name in (
            "step",
            "reset",
        ):
            sync, index, phase = frame.f_locals["self"], frame.f_locals.get("i"), frame.f_code.co_name
        tb = tb.tb_next
    if sync is None:
        return None
    expected = sync.single_observation_space.shape
    wrong = [i for i, obs in enumerate(getattr(sync, "_env_obs", [])) if np.shape(obs) != expected]
    if wrong:
        return f"env {wrong[0]} returned an observation of shape {np.shape(sync._env_obs[wrong[0]])}, not {expected}"
    text = (str(err).strip().splitlines() or [""])[0] or type(err).__name__
    elapsed = None if index is None or phase != "step" else _elapsed(sync.envs[index])
    where = "" if elapsed is None else f" at step {elapsed + 1} of its episode"  # the step it failed to take
    return f"env {index} raised {type(err).__name__} in {phase}(){where}: {text}"


def check_rollout(rollout: Any, update: int, observations: bool = True) -> None:
    """Raise :class:`EnvFault` for the first non-finite observation or reward of ``rollout`` (update ``update``).

    ``observations=False`` scans the rewards only: for observation spaces that cannot hold a NaN
    (:func:`policygrad.spaces.always_finite`), where the scan of a batch of Atari frames cost about
    a tenth of the rollout's time.
    """
    checked = (("observation", rollout.observations),) if observations else ()
    for name, values in (*checked, ("reward", rollout.rewards)):
        finite = torch.isfinite(values)
        if finite.all():
            continue
        rows = finite.reshape(*values.shape[:2], -1).all(-1)
        env, step = (int(x) for x in torch.nonzero(~rows)[0])
        bad = values[env, step].flatten()
        value = bad[~torch.isfinite(bad)][0].item()
        seen = ", seen at" if name == "observation" else " at"  # an observation is stored before the step it starts
        raise EnvFault(
            f"env {env} returned a non-finite {name} ({value}){seen} step {step + 1} of update {update}; "
            "training stopped and the last checkpoint is kept (fix the environment, then resume)"
        )


class GuardedCollector:
    """A rollout backend whose environment faults are :class:`EnvFault`; everything else passes through."""

    def __init__(self, inner: Any, check_observations: bool = True) -> None:
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "check_observations", check_observations)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)

    def _guard(self, method: str, update: int | None, *args: Any) -> Any:
        try:
            result = getattr(self.inner, method)(*args)
        except EnvFault:
            raise
        except Exception as err:  # noqa: BLE001 - reported with its env when it came from one
            what = describe(err)
            if what is None:
                raise
            at = "" if update is None else f" during update {update}"
            raise EnvFault(f"{what}{at}; training stopped and the last checkpoint is kept") from None
        if update is not None:
            check_rollout(result, update, self.check_observations)
        return result

    def reset(self, seeds: Any) -> None:
        self._guard("reset", None, seeds)

    def collect(self, steps: int, update: int) -> Any:
        return self._guard("collect", update + 1, steps, update)

    def collect_episodes(self, max_steps: int, update: int) -> Any:
        return self._guard("collect_episodes", update + 1, max_steps, update)


__all__ = ["EnvFault", "GuardedCollector", "check_rollout", "describe"]
