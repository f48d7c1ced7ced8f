"""Which vector env steps fastest here: the Gymnasium stack policygrad's presets use, ALE's own, EnvPool.

    pip install 'policygrad[mujoco,atari]' envpool
    python benchmarks/vector_envs.py                 # --seconds 4 --repeats 3

Random actions, no policy, env steps per second (a step of 8 envs counts 8), the vector envs
alternating ``--repeats`` times for ``--seconds`` each, the median kept:

- ``ALE/Breakout-v5`` × 8 with policygrad's preset preprocessing (frame skip 4 with max-pooling, no-op
  starts ≤ 30, 84×84 grayscale, 4 stacked frames, no sticky actions):
  - policygrad: the preset's env kwargs and wrappers (``AtariPreprocessing``, ``ClipReward``,
    ``FrameStackObservation``) around each env of a ``SyncVectorEnv``, built by ``policygrad.envs.make_envs``
    as the trainer builds it;
  - ALE's ``AtariVectorEnv`` (``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``,
    C++ threads, the same preprocessing as options; FIRE on reset off, as in the preset);
  - EnvPool's ``Breakout-v5`` with the same options, where EnvPool is installed.
- ``HalfCheetah-v5`` and ``Hopper-v5``, one env (the presets' count): Gymnasium's env against EnvPool's port.

Writes ``benchmarks/results/vector_envs.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
ATARI_OPTIONS = dict(frameskip=4, noop_max=30, img_height=84, img_width=84, grayscale=True, stack_num=4, maxpool=True)


def rate(step: Callable[[], None], envs: int, seconds: float) -> float:
    """Env steps per second of ``step`` (one vector step of ``envs`` envs), called for ``seconds``."""
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls * envs / (time.perf_counter() - start)


def atari_candidates(n: int) -> dict[str, Callable[[], Callable[[], None]]]:
    """Breakout × n: name → a builder returning one random vector step."""
    import gymnasium as gym

    from policygrad import env_source
    from policygrad.config import load_preset
    from policygrad.envs import make_envs

    preset = load_preset("ppo", "ALE/Breakout-v5")
    rng = np.random.default_rng(0)

    def stepper(envs: Any) -> Callable[[], None]:
        envs.reset(seed=0)
        return lambda: envs.step(rng.integers(0, 4, n))

    def policygrad_stack() -> Callable[[], None]:
        env_id = env_source.resolve("ALE/Breakout-v5", preset["env_kwargs"], preset["wrappers"])
        return stepper(make_envs(env_id, n, "sync")[0])

    def ale_vector() -> Callable[[], None]:
        return stepper(
            gym.make_vec(
                "ALE/Breakout-v5", num_envs=n, vectorization_mode="vector_entry_point", repeat_action_probability=0.0,
                use_fire_reset=False, reward_clipping=True, **ATARI_OPTIONS,
            )
        )  # fmt: skip

    candidates = {"policygrad preset (SyncVectorEnv + wrappers)": policygrad_stack, "ALE AtariVectorEnv": ale_vector}
    if installed("envpool"):

        def envpool_vector() -> Callable[[], None]:
            import envpool

            envs = envpool.make_gymnasium(
                "Breakout-v5", num_envs=n, seed=0, repeat_action_probability=0.0, noop_max=30, img_height=84,
                img_width=84, stack_num=4, frame_skip=4, episodic_life=False, reward_clip=True, use_fire_reset=False,
            )  # fmt: skip
            envs.reset()
            return lambda: envs.step(rng.integers(0, 4, n))

        candidates["EnvPool"] = envpool_vector
    return candidates


def mujoco_candidates(env_id: str) -> dict[str, Callable[[], Callable[[], None]]]:
    """One MuJoCo env: Gymnasium's against EnvPool's port."""
    import gymnasium as gym

    rng = np.random.default_rng(0)

    def gymnasium_env() -> Callable[[], None]:
        env = gym.make(env_id)
        env.reset(seed=0)
        size = env.action_space.shape[0]

        def step() -> None:
            _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, size).astype(np.float32))
            if terminated or truncated:
                env.reset()

        return step

    candidates = {"Gymnasium": gymnasium_env}
    if installed("envpool"):

        def envpool_env() -> Callable[[], None]:
            import envpool

            envs = envpool.make_gymnasium(env_id, num_envs=1, seed=0)
            envs.reset()
            size = envs.action_space.shape[-1]
            return lambda: envs.step(rng.uniform(-1, 1, (1, size)).astype(np.float32))

        candidates["EnvPool"] = envpool_env
    return candidates


def installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements per vector env (default 3)")
    args = parser.parse_args()
    import gymnasium as gym

    before = os.getloadavg()[0]
    groups = {"ALE/Breakout-v5 × 8": (8, atari_candidates(8))}
    for env_id in ("HalfCheetah-v5", "Hopper-v5"):
        groups[f"{env_id} × 1"] = (1, mujoco_candidates(env_id))
    results: dict[str, dict[str, float]] = {}
    for group, (n, candidates) in groups.items():
        steppers = {name: build() for name, build in candidates.items()}
        measured: dict[str, list[float]] = {name: [] for name in steppers}
        for _ in range(args.repeats):
            for name, step in steppers.items():
                measured[name].append(rate(step, n, args.seconds))
        results[group] = {name: statistics.median(values) for name, values in measured.items()}
        print(group, {name: round(value) for name, value in results[group].items()}, file=sys.stderr)
    versions = f"Gymnasium {gym.__version__}"
    for package in ("ale_py", "mujoco", "envpool"):
        if installed(package):
            versions += f", {package} {__import__(package).__version__}"
    when, cpu = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), platform.processor() or platform.machine()
    header = (
        f"Measured {when} on {cpu} "
        f"({os.cpu_count()} cores), {versions}; load average {before:.1f} before, {os.getloadavg()[0]:.1f} after."
    )
    lines = [header, "", "| environments | vector env | env steps/s | against the first |", "|---|---|---:|---:|"]
    for group, by_name in results.items():
        first = next(iter(by_name.values()))
        for name, value in by_name.items():
            lines.append(f"| {group} | {name} | {value:,.0f} | {value / first:.2f}× |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vector_envs.md").write_text(table + "\n")
    (RESULTS / "vector_envs.json").write_text(json.dumps({"header": header, "steps_per_second": results}, indent=2))


if __name__ == "__main__":
    main()
