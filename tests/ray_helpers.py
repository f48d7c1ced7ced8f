"""Shared pieces of the Ray tests: settings, faulty environments, and running a training to compare.

The faulty environments are CartPole with one fault at one step of one env, only inside a
Ray worker (never in the learner, which evaluates the same env id) and at most once per
marker file, so a recreated worker or a resumed run does not hit it again. Otherwise they
are CartPole-v1, so a local CartPole run is the reference for their runs.
"""

from __future__ import annotations

import csv
import os
import re
import time
from pathlib import Path

# Before Ray is imported: no usage statistics, services on 127.0.0.1 only.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
for _key, _value in RAY_ENV.items():
    os.environ.setdefault(_key, _value)

import gymnasium as gym  # noqa: E402
from gymnasium.envs.classic_control.cartpole import CartPoleEnv  # noqa: E402

from policygrad.trainer import Trainer  # noqa: E402

TIME_COLUMNS = re.compile("time|sps|wall|fps|second|duration|elapsed", re.I)


def _in_ray_worker() -> bool:
    try:
        import ray

        return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # noqa: BLE001
        return False


class FaultyCartPole(CartPoleEnv):
    """CartPole with faults: each ``(kind, index, at_step, marker)`` hits env ``index`` at its ``at_step``-th step.

    The env's index is its first reset seed (runs here use seed 0, so env i is reset with seed i).
    """

    def __init__(self, faults=(), render_mode=None):
        super().__init__(render_mode=render_mode)
        self.faults = [tuple(f) for f in faults]
        self.env_index = None
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        if seed is not None and self.env_index is None:
            self.env_index = seed
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.steps += 1
        for kind, index, at_step, marker in self.faults:
            if self.steps != at_step or self.env_index != index or not _in_ray_worker():
                continue
            if marker is not None and os.path.exists(marker):
                continue
            if marker is not None:
                Path(marker).touch()
            if kind == "raise":
                raise ValueError(f"boom at step {self.steps}")
            if kind == "crash":
                os._exit(1)
            if kind == "hang":
                time.sleep(120)
        return super().step(action)


def register_faulty(env_id: str, *faults: tuple) -> str:
    """Register FaultyCartPole with these ``(kind, index, at_step, marker path or None)`` faults."""
    faults = [
        (kind, index, at_step, None if marker is None else str(marker)) for kind, index, at_step, marker in faults
    ]
    gym.register(env_id, entry_point=FaultyCartPole, kwargs=dict(faults=faults), max_episode_steps=500)
    return env_id


# The layout these tests are written for (shards of 8 envs, faults at given steps). Runs use the
# algorithm's defaults plus this, never a preset: the faulty env ids have none, and CartPole's is
# tuned for wall-clock and may change.
LAYOUT = {"num_envs": 8, "rollout_steps": 5, "total_steps": 1200, "eval_every": 0}


def config(algo: str = "a2c", env_id: str = "CartPole-v1", **overrides):
    """The algorithm's default config with ``LAYOUT`` (where it applies) and ``overrides``."""
    import dataclasses

    from policygrad.algorithms import get_algorithm
    from policygrad.config import build_config

    config_class = get_algorithm(algo).Config
    fields = {f.name for f in dataclasses.fields(config_class)}
    values = {**{k: v for k, v in LAYOUT.items() if k in fields}, **overrides, "env_id": env_id}
    return build_config(config_class, values)


def train(run_dir: Path, algo: str = "a2c", env_id: str = "CartPole-v1", **overrides):
    """Train (quietly); returns the trainer, whose collector stays inspectable after the run."""
    trainer = Trainer.new(algo, config(algo, env_id, **overrides), run_dir, quiet=True)
    trainer.run()
    return trainer


def rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without its time columns."""
    with open(run_dir / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if not TIME_COLUMNS.search(k)} for row in csv.DictReader(handle)]


def assert_same_run(a: Path, b: Path) -> None:
    """Same metrics row for row (time columns aside) and bit-identical final weights."""
    from policygrad.trainer import load

    ra, rb = rows(a), rows(b)
    assert len(ra) == len(rb) > 1
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        assert x == y, f"row {i}: {x} != {y}"
    wa, wb = load(a).state_dict(), load(b).state_dict()
    assert wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)
