"""Where the environments are stepped: in this process, or on Ray workers.

The trainer talks to one small interface, :class:`RolloutBackend`. Two implementations
satisfy it and return the same :class:`~policygrad.rollout.Rollout`, bit for bit:

- ``local`` — :class:`policygrad.rollout.RolloutCollector`, one vector env in this process;
- ``ray`` — :class:`policygrad.distributed.ray_backend.RayCollector`: rollout workers as
  Ray actors, each stepping a contiguous shard of the environments with a copy of the
  policy; the learner broadcasts the weights once per update and concatenates the
  shards in env order.

:func:`make_collector` picks one. A local run never imports :mod:`policygrad.distributed`;
Ray is an optional extra (``pip install 'policygrad[ray]'``), imported only when
``backend="ray"`` is asked for. See docs/distributed.md.
"""

from __future__ import annotations

import collections
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym

from policygrad.agent import Agent
from policygrad.kernels import rollout_sampler
from policygrad.rollout import Rollout, RolloutCollector

BACKENDS = ("local", "ray")


@runtime_checkable
class RolloutBackend(Protocol):
    """What the trainer needs from a source of rollouts.

    ``collect`` continues the running episodes for ``steps`` vector steps; ``collect_episodes``
    plays one complete episode per env. ``update`` keys the action randomness (with the seed
    and the global env index), so every backend draws the same actions.
    """

    recent_lengths: collections.deque[int]

    def reset(self, seeds: int | list[int] | None) -> None: ...

    def collect(self, steps: int, update: int) -> Rollout: ...

    def collect_episodes(self, max_steps: int, update: int) -> Rollout: ...

    def mean_recent_return(self) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], with_env_state: bool) -> None: ...


def make_collector(envs: gym.vector.VectorEnv, agent: Agent, cfg: Any) -> RolloutBackend:
    """The rollout backend ``cfg.backend`` asks for.

    ``envs`` is the learner's own vector env: the local backend steps it; the Ray backend
    only uses the config to build one shard of it on each worker.
    """
    backend = getattr(cfg, "backend", "local")
    if backend == "local":
        return RolloutCollector(envs, agent, cfg.seed, sampler=rollout_sampler(agent, cfg.learner))
    from policygrad.distributed.ray_backend import RayCollector  # the Ray package is entered only here

    return RayCollector(agent, cfg)


__all__ = ["BACKENDS", "RolloutBackend", "make_collector"]
