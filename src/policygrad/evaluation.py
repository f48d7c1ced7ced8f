"""Deterministic evaluation: fixed seeds, the policy's mode, raw (unnormalised) rewards."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policygrad import batched_envs, env_source, heads
from policygrad.agent import Agent
from policygrad.checkpoint import load_latest
from policygrad.envs import action_masks, flat_observations
from policygrad.runs import read_run_config

EVAL_SEED_OFFSET = 1_000_003


def evaluate(
    agent: Agent,
    env_id: str,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    max_steps: int | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` episodes played in parallel, one per env, seeded ``seed + offset + i``.

    The same weights and seed always give the same returns; observation normalisation
    uses the statistics stored in the agent. A recurrent agent (policy=lstm) plays each
    episode from a zero state of its own, whatever state training carries.
    """
    envs = batched_envs.replica(env_id, episodes)  # steps exactly as the SyncVectorEnv below, faster
    if envs is None:
        fns = [functools.partial(gym.make, env_id) for _ in range(episodes)]
        envs = flat_observations(gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP))
    limit = max_steps or gym.spec(env_id).max_episode_steps or 10_000
    try:
        obs, info = envs.reset(seed=[seed + EVAL_SEED_OFFSET + i for i in range(episodes)])
        masked, width = agent.spec.masked, agent.spec.action_dim
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        generator = torch.Generator().manual_seed(seed)
        state = agent.initial_state(episodes) if agent.recurrent else None  # one episode per env: never reset
        with torch.no_grad():
            for _ in range(limit):
                obs_t = torch.as_tensor(agent.normalize_observation(obs), dtype=torch.float32)
                if deterministic:
                    allowed = torch.from_numpy(action_masks(envs, info, width)) if masked else None
                    if state is not None:
                        actions, state = agent.mode_step(obs_t, state, allowed)
                    else:
                        actions = agent.mode(obs_t, allowed)
                else:
                    spec = agent.spec
                    shape, normal = heads.noise_shape(spec.kind, spec.action_dim, spec.action_nvec)
                    noise = (torch.randn if normal else torch.rand)(episodes, *shape, generator=generator)
                    allowed = torch.from_numpy(action_masks(envs, info, width)) if masked else None
                    if state is not None:
                        actions, _, _, state = agent.sample_step(obs_t, noise, state, None, allowed)
                    else:
                        actions = agent.sample(obs_t, noise, allowed)[0]
                obs, reward, term, trunc, info = envs.step(agent.to_env_actions(actions))
                returns += np.where(running, reward, 0.0)
                running &= ~(term | trunc)
                if not running.any():
                    break
    finally:
        envs.close()
    return returns


def evaluate_run(
    run_dir: str | Path, episodes: int = 10, seed: int = 0, from_checkpoint: int | None = None
) -> dict[str, Any]:
    """Deterministic evaluation of a run folder's newest checkpoint."""
    saved = read_run_config(Path(run_dir))
    checkpoint = load_latest(Path(run_dir), from_checkpoint)  # a newest one that cannot be read is an error
    agent = checkpoint.build_agent()
    config = saved["config"]
    env_key = env_source.resolve(config["env_id"], config.get("env_kwargs"), config.get("wrappers"))
    returns = evaluate(agent, env_key, episodes, seed)
    return {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "episodes": int(episodes),
        "min_return": float(returns.min()),
        "max_return": float(returns.max()),
        "returns": returns.tolist(),
        "algo": saved["algo"],
        "env_id": config["env_id"],
        "env_step": checkpoint.state["counters"]["env_step"],
        "checkpoint": str(checkpoint.path),
        "update": checkpoint.state["update"],
    }
