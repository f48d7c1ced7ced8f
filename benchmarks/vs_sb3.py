"""policygrad against Stable-Baselines3, side by side on this machine.

    pip install 'policygrad[bench,stats]'    # Stable-Baselines3 (bench), rliable for the IQM CIs (stats)
    python benchmarks/vs_sb3.py              # every target, seeds 0-4; writes benchmarks/results/vs_sb3.{md,json}
    python benchmarks/vs_sb3.py --targets 1 4 --seeds 0 1
    python benchmarks/vs_sb3.py --targets 1 --merge   # rerun target 1, keep the others' results
    python benchmarks/vs_sb3.py --targets 6 --seeds 0 1 2 --out benchmarks/results/vs_sb3_lunar
                                             # LunarLander-v3 to 200 only (needs box2d)
    pip install 'policygrad[bench,mujoco,box2d,atari]'
    python benchmarks/vs_sb3.py --envs HalfCheetah-v5 Hopper-v5 LunarLander-v3 ALE/Breakout-v5 --steps 50000
                                             # same work beyond classic control: vs_sb3_envs.{md,json}
    python benchmarks/vs_sb3.py --rollouts HalfCheetah-v5 ALE/Breakout-v5
                                             # target 4 for these presets' own runs: vs_sb3_rollouts.{md,json}

Targets (issue "Performance: faster than Stable-Baselines3"):

1. same work — SB3-zoo PPO and A2C hyperparameters reproduced in policygrad; env steps/s on
   CartPole-v1 (training time, no evaluation);
2. time to solve — each library's own CartPole-v1 configuration (policygrad's preset, the
   SB3 zoo's) until a deterministic 10-episode evaluation mean ≥ 475, evaluated every 4,096
   env steps (or the nearest update boundary), evaluation time excluded;
3. the same on Pendulum-v1 (≥ −200) and Acrobot-v1 (≥ −100) with PPO;
4. rollout collection against its ceiling (env step + one batched policy forward, nothing
   else) for 1 to 1,024 environments;
5. peak resident memory of the time-to-solve runs;
6. (not run by default) the same on LunarLander-v3 (≥ 200) with PPO, both evaluated every 16,384
   env steps (one zoo rollout, 16 envs × 1,024), each run capped at its configuration's budget
   (1M env steps for both; issue "Beyond classic control").

With ``--envs``, instead of the targets: the same work — PPO with the RL zoo's hyperparameters in
both libraries (policygrad's preset for each environment, which translates the zoo's entry; SB3
the entry itself, Breakout with the zoo's AtariWrapper, 4 stacked frames and CnnPolicy) for
``--steps`` env steps (default 50,000), training steps/s of each, their ratio against the target
(≥ 3× on MuJoCo, ≥ 8× on LunarLander, ≥ 2× on Atari) and each run's peak resident memory.

With ``--rollouts``, instead of the targets: target 4 for the PPO preset of each environment given, its
run as the trainer builds it (``Trainer.new``: the preset's vector env and wrappers, agent and rollout
sampler); ``--repeats`` alternating runs (default 3) of ``--seconds`` each (default 4), the median kept.

Every training run is a fresh subprocess (so its peak RSS is its own) on one torch thread,
and the two libraries alternate seed by seed, so a change in the machine's load hits both;
for target 1 each library keeps the fastest of ``--repeats`` runs per seed (default 3).
Both are evaluated by the same function: ``evaluation_episodes`` below, the episodes and
seeds policygrad's own evaluation plays. The load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
EVAL_EVERY = 4096
EVAL_EPISODES = 10

# ----- the configurations compared ---------------------------------------------------------------
# SB3 zoo hyperparameters (rl-baselines3-zoo, hyperparams/ppo.yml and a2c.yml); "lin_x" is a
# linear decay from x to 0 over the run.
ZOO = {
    ("ppo", "CartPole-v1"): dict(
        n_envs=8, n_timesteps=100_000, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
        ent_coef=0.0, learning_rate="lin_0.001", clip_range="lin_0.2",
    ),
    ("a2c", "CartPole-v1"): dict(n_envs=8, n_timesteps=500_000, ent_coef=0.0),
    ("ppo", "Pendulum-v1"): dict(
        n_envs=4, n_timesteps=100_000, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
        learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4,
    ),
    ("ppo", "Acrobot-v1"): dict(
        normalize=True, n_envs=16, n_timesteps=1_000_000, n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4,
        ent_coef=0.0,
    ),
    # Beyond classic control (--envs): the zoo's entries at commit 22e3ff2, which policygrad's presets
    # (src/policygrad/presets/ppo/) translate. The zoo has no MuJoCo v5 entries: its v4 ones serve
    # (v5 keeps the v4 dynamics and rewards); LunarLander-v3 is its own entry; Breakout is the zoo's
    # "atari" entry (AtariWrapper, 4 frames stacked, CnnPolicy).
    ("ppo", "HalfCheetah-v5"): dict(
        normalize=True, n_envs=1, n_timesteps=1_000_000, batch_size=64, n_steps=512, gamma=0.98,
        learning_rate=2.0633e-05, ent_coef=0.000401762, clip_range=0.1, n_epochs=20, gae_lambda=0.92,
        max_grad_norm=0.8, vf_coef=0.58096,
        policy_kwargs=dict(
            log_std_init=-2, ortho_init=False, activation_fn="relu", net_arch=dict(pi=[256, 256], vf=[256, 256])
        ),
    ),
    ("ppo", "Hopper-v5"): dict(
        normalize=True, n_envs=1, n_timesteps=1_000_000, batch_size=32, n_steps=512, gamma=0.999,
        learning_rate=9.80828e-05, ent_coef=0.00229519, clip_range=0.2, n_epochs=5, gae_lambda=0.99,
        max_grad_norm=0.7, vf_coef=0.835671,
        policy_kwargs=dict(
            log_std_init=-2, ortho_init=False, activation_fn="relu", net_arch=dict(pi=[256, 256], vf=[256, 256])
        ),
    ),
    ("ppo", "LunarLander-v3"): dict(
        n_envs=16, n_timesteps=1_000_000, n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4,
        ent_coef=0.01,
    ),
    ("ppo", "ALE/Breakout-v5"): dict(
        env_wrapper="AtariWrapper", frame_stack=4, policy="CnnPolicy", n_envs=8, n_steps=128, n_epochs=4,
        batch_size=256, n_timesteps=10_000_000, learning_rate="lin_2.5e-4", clip_range="lin_0.1", vf_coef=0.5,
        ent_coef=0.01,
    ),
}  # fmt: skip

#: The zoo's MuJoCo entries (``ZOO``) in policygrad's terms, the one table that the same-work (--envs)
#: and the learning-parity (mujoco_parity.py) benchmarks take policygrad's settings from, so that both
#: libraries do the same work whatever a preset holds: HalfCheetah's preset is this translation, Hopper's
#: follows CleanRL (presets/ppo/Hopper-v5.toml says why). SB3's value loss is mean((R − V)²) and
#: policygrad's ½·mean((R − V)²), so vf_coef doubles; normalize: true is VecNormalize's defaults
#: (observations and rewards, both clipped at ±10).
_SB3_MUJOCO = dict(  # SB3's PPO with normalize: true, and the policy_kwargs both zoo entries give
    num_envs=1, anneal_lr=False, clip_value_loss=False, grad_clip="joint", normalize_advantages=True,
    normalize_obs=True, normalize_reward=True, clip_obs=10.0, clip_reward=10.0,
    ortho_init=False, init_log_std=-2.0, activation="relu", hidden_sizes=[256, 256],
)  # fmt: skip
ZOO_TRANSLATED: dict[str, dict[str, Any]] = {
    "HalfCheetah-v5": dict(
        _SB3_MUJOCO, rollout_steps=512, minibatch_size=64, update_epochs=20, learning_rate=2.0633e-05, gamma=0.98,
        gae_lambda=0.92, clip_coef=0.1, ent_coef=0.000401762, vf_coef=2 * 0.58096, max_grad_norm=0.8,
    ),
    "Hopper-v5": dict(
        _SB3_MUJOCO, rollout_steps=512, minibatch_size=32, update_epochs=5, learning_rate=9.80828e-05, gamma=0.999,
        gae_lambda=0.99, clip_coef=0.2, ent_coef=0.00229519, vf_coef=2 * 0.835671, max_grad_norm=0.7,
    ),
}  # fmt: skip

#: "Same work" beyond classic control (--envs): the environments whose policygrad preset translates
#: the zoo's entry, each with the speed its target asks of policygrad's training steps/s over SB3's
#: (issue "Beyond classic control").
SAME_WORK_TARGETS = {"HalfCheetah-v5": 3.0, "Hopper-v5": 3.0, "LunarLander-v3": 8.0, "ALE/Breakout-v5": 2.0}
SAME_WORK_STEPS = 50_000

# The same hyperparameters in policygrad's terms (target 1). Differences that cost nothing per
# step: SB3's A2C steps with RMSprop (policygrad: Adam), SB3 clips the joint gradient norm
# (policygrad: each network's), and the zoo anneals PPO's clip range (policygrad: fixed).
ZOO_IN_POLICYGRAD = {
    "ppo": dict(
        num_envs=8, rollout_steps=32, minibatch_size=256, update_epochs=20, gae_lambda=0.8, gamma=0.98,
        ent_coef=0.0, learning_rate=1e-3, anneal_lr=True, clip_coef=0.2, vf_coef=0.5, max_grad_norm=0.5,
        normalize_advantages=True,
    ),
    "a2c": dict(
        num_envs=8, rollout_steps=5, learning_rate=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5,
        max_grad_norm=0.5, normalize_advantages=False,
    ),
}  # fmt: skip

TARGETS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0, "Acrobot-v1": -100.0, "LunarLander-v3": 200.0}
# LunarLander's evaluation episodes run up to 1,000 steps: evaluating once per zoo rollout (16 × 1,024 env
# steps) rather than every 4,096 keeps the untimed evaluation from dominating the wall-clock time.
EVAL_EVERY_FOR = {"LunarLander-v3": 16_384}
THROUGHPUT_STEPS = {"ppo": 40_960, "a2c": 40_000}


# ----- evaluation shared by both libraries ------------------------------------------------------
def evaluation_episodes(act: Any, env_id: str, seed: int, episodes: int = EVAL_EPISODES) -> float:
    """Mean return of ``episodes`` deterministic episodes, seeded as policygrad's evaluation seeds them.

    ``act`` maps a batch of raw observations to environment actions.
    """
    import functools

    import gymnasium as gym
    import numpy as np

    from policygrad.evaluation import EVAL_SEED_OFFSET

    fns = [functools.partial(gym.make, env_id) for _ in range(episodes)]
    envs = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    obs, _ = envs.reset(seed=[seed + EVAL_SEED_OFFSET + i for i in range(episodes)])
    returns, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    for _ in range(gym.spec(env_id).max_episode_steps or 10_000):
        obs, reward, term, trunc, _ = envs.step(act(obs))
        returns += np.where(running, reward, 0.0)
        running &= ~(term | trunc)
        if not running.any():
            break
    envs.close()
    return float(returns.mean())


# ----- one run, in its own process -----------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_policygrad(spec: dict[str, Any]) -> dict[str, Any]:
    from policygrad.run_log import read_metrics
    from policygrad.trainer import Trainer, resolve_config

    overrides = dict(spec.get("overrides", {}), seed=spec["seed"])
    cfg, _ = resolve_config(spec["algo"], spec["env_id"], overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer.new(spec["algo"], cfg, Path(tmp) / "run", quiet=True)
        trainer.run()
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
        curve = [[int(row["env_step"]), float(row["eval_return_mean"])] for row in read_metrics(Path(tmp) / "run")
                 if row.get("eval_return_mean")]  # fmt: skip
    keys = ["env_steps", "train_seconds", "eval_seconds", "steps_per_second", "final_eval_mean"]
    out = {k: summary[k] for k in keys + ["target_reached_step", "target_reached_train_seconds"]}
    out["peak_rss_mb"] = peak_rss_mb()
    out["eval_curve"] = curve  # [env step, deterministic evaluation return] at each evaluation during training
    return out


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def run_sb3(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    torch.set_num_threads(1)
    algo, env_id, seed = spec["algo"], spec["env_id"], spec["seed"]
    hp = dict(spec.get("hyperparams") or ZOO[(algo, env_id)])  # another script may pass the zoo's values itself
    n_envs, budget, normalize = hp.pop("n_envs"), hp.pop("n_timesteps"), hp.pop("normalize", False)
    policy, wrapper, frame_stack = hp.pop("policy", "MlpPolicy"), hp.pop("env_wrapper", None), hp.pop("frame_stack", 0)
    if "policy_kwargs" in hp:  # the zoo writes activation_fn=nn.ReLU; JSON carries its name
        kwargs = dict(hp["policy_kwargs"])
        kwargs["activation_fn"] = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[kwargs.get("activation_fn", "tanh")]
        hp["policy_kwargs"] = kwargs
    total = spec.get("total_steps") or budget
    for key in ("learning_rate", "clip_range"):
        if key in hp:
            hp[key] = _schedule(hp[key])
    if wrapper == "AtariWrapper":  # the zoo's Atari pipeline; the ALE's own frame skip and sticky actions off,
        import ale_py  # as policygrad's preset has them (AtariWrapper skips 4 frames itself)
        import gymnasium as gym

        gym.register_envs(ale_py)
        atari_kwargs = dict(frameskip=1, repeat_action_probability=0.0)
        venv = make_atari_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=atari_kwargs)
    else:
        venv = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    if frame_stack:
        venv = VecFrameStack(venv, n_stack=frame_stack)
    if normalize:
        venv = VecNormalize(venv, gamma=hp.get("gamma", 0.99))
    model = (PPO if algo == "ppo" else A2C)(policy, venv, seed=seed, verbose=0, device="cpu", **hp)
    target, eval_every = spec.get("target"), spec.get("eval_every", 0)

    def act(obs: np.ndarray) -> np.ndarray:
        if normalize:
            obs = venv.normalize_obs(obs)
        return model.predict(obs, deterministic=True)[0]

    class Evaluate(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.eval_seconds, self.reached, self.last, self.next_eval = 0.0, None, None, eval_every
            self.curve: list[list[float]] = []

        def _on_step(self) -> bool:
            if not eval_every or self.num_timesteps < self.next_eval:
                return True
            self.next_eval += eval_every
            start = time.perf_counter()
            self.last = evaluation_episodes(act, env_id, seed)
            self.eval_seconds += time.perf_counter() - start
            self.curve.append([self.num_timesteps, self.last])
            if target is not None and self.last >= target:
                self.reached = (self.num_timesteps, time.perf_counter() - learn_start - self.eval_seconds)
                return False
            return True

    callback = Evaluate()
    learn_start = time.perf_counter()
    model.learn(total_timesteps=total, callback=callback)
    wall = time.perf_counter() - learn_start
    train_seconds = wall - callback.eval_seconds
    # No evaluation during training: one at the end, as policygrad's run ends with one (not of Atari, whose
    # agent reads the wrapped frames evaluation_episodes does not make).
    if not eval_every and wrapper is None:
        start = time.perf_counter()
        callback.last = evaluation_episodes(act, env_id, seed)
        callback.eval_seconds += time.perf_counter() - start
    steps = model.num_timesteps
    return {
        "env_steps": steps,
        "train_seconds": train_seconds,
        "eval_seconds": callback.eval_seconds,
        "steps_per_second": steps / train_seconds,
        "final_eval_mean": callback.last,
        "target_reached_step": callback.reached[0] if callback.reached else None,
        "target_reached_train_seconds": callback.reached[1] if callback.reached else None,
        "peak_rss_mb": peak_rss_mb(),
        "eval_curve": callback.curve,
    }


def timed(seconds: float, step: Any) -> tuple[float, float]:
    """Call ``step()`` (it returns the env steps it took) for ``seconds``: env steps per wall and per CPU second.

    Per second of this process's CPU time (one thread, the envs stepped in-process), what a
    background load takes from the wall clock drops out.
    """
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        done += step()
    return done / (time.perf_counter() - start), done / max(time.process_time() - cpu, 1e-9)


def _ceiling(envs: Any, agent: Any, n: int, seconds: float) -> float:
    """Env steps/s of env step + one batched policy forward, nothing else."""
    import numpy as np
    import torch

    from policygrad.envs import reset_seeds
    from policygrad.kernels.fused_mlp import FusedSampler

    obs, _ = envs.reset(seed=reset_seeds("auto", 0, n))
    fused = FusedSampler(agent).ready()

    def step() -> int:
        nonlocal obs
        out, _ = fused.infer(torch.from_numpy(np.asarray(obs, dtype=np.float32)))
        obs, *_ = envs.step(out.argmax(-1).numpy())
        return n

    with torch.inference_mode():
        return timed(seconds, step)[0]


def _collect(envs: Any, agent: Any, n: int, steps: int, seconds: float) -> float:
    """Env steps/s of RolloutCollector.collect."""
    from policygrad.envs import reset_seeds
    from policygrad.kernels import rollout_sampler
    from policygrad.rollout import RolloutCollector

    collector = RolloutCollector(envs, agent, seed=0, sampler=rollout_sampler(agent))
    collector.reset(reset_seeds("auto", 0, n))
    updates = itertools.count()
    return timed(seconds, lambda: collector.collect(steps, next(updates)).rewards.numel())[0]


def rollout_table(env_id: str, sizes: list[int], seconds: float) -> list[dict[str, Any]]:
    """Steps/s of RolloutCollector.collect against env step + one batched forward, per num_envs."""
    import torch

    from policygrad.agent import Agent, AgentSpec
    from policygrad.envs import make_envs

    torch.set_num_threads(1)
    rows = []
    for n in sizes:
        envs, info = make_envs(env_id, n)  # the default vector env (CartPole: the batched replica)
        agent = Agent(AgentSpec(info.obs_dim, info.discrete, info.action_dim, (64, 64), "tanh", True))
        steps = max(8, min(128, 4096 // n))
        _ceiling(envs, agent, n, seconds / 4), _collect(envs, agent, n, steps, seconds / 4)  # warm up
        limit, rate = _ceiling(envs, agent, n, seconds), _collect(envs, agent, n, steps, seconds)
        rows.append(dict(num_envs=n, rollout_steps=steps, ceiling=limit, collect=rate, fraction=rate / limit))
        envs.close()
    return rows


def preset_rollout(env_id: str, seconds: float, repeats: int) -> dict[str, Any]:
    """Steps/s of the PPO preset's own rollout on ``env_id`` against env step + one batched forward.

    The envs, the agent and the collector are the trainer's (``Trainer.new`` in a scratch run
    folder: the preset's vector env and wrappers, ``AgentSpec.for_run``, ``make_collector``'s
    sampler behind the trainer's guard). The ceiling steps that vector env with the agent's
    deterministic action from one batched forward per vector step (``Agent.mode``: the mean of
    a Gaussian, the argmax of a categorical; clipped to the action box), under inference mode,
    on the observations as the env returns them. Ceiling and collection alternate ``repeats``
    times, ``seconds`` each, after a warm-up of a quarter of that.
    """
    import torch

    from policygrad.trainer import Trainer, resolve_config

    cfg, preset_used = resolve_config("ppo", env_id, {})
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer.new("ppo", cfg, Path(scratch) / "run", preset_used, quiet=True)
        envs, agent, collector, n = trainer.envs, trainer.agent, trainer.collector, cfg.num_envs
        obs = collector.obs  # the collector's reset observations: the ceiling's first step starts there
        updates = itertools.count()  # the collections' update indices, continued from run to run

        def ceiling_step() -> int:
            nonlocal obs
            obs, *_ = envs.step(agent.to_env_actions(agent.mode(torch.from_numpy(obs))))
            return n

        def ceiling(span: float) -> tuple[float, float]:
            with torch.inference_mode():
                return timed(span, ceiling_step)

        def collect(span: float) -> tuple[float, float]:
            return timed(span, lambda: collector.collect(cfg.rollout_steps, next(updates)).rewards.numel())

        ceiling(seconds / 4), collect(seconds / 4)  # warm up
        runs = []
        for _ in range(repeats):
            (limit, limit_cpu), (rate, rate_cpu) = ceiling(seconds), collect(seconds)
            runs.append(dict(ceiling=limit, collect=rate, ceiling_cpu=limit_cpu, collect_cpu=rate_cpu))
        sampler = type(collector.inner.sampler).__name__ if collector.inner.sampler is not None else "Agent.sample"
        vectorization = trainer.vectorization
        trainer.close()
    limit, rate = statistics.median(r["ceiling"] for r in runs), statistics.median(r["collect"] for r in runs)
    # each collection against the ceiling measured just before it: a change in the machine's load hits both
    paired = statistics.median(r["collect"] / r["ceiling"] for r in runs)
    # per second of this process's CPU time (timed's second rate)
    paired_cpu = statistics.median(r["collect_cpu"] / r["ceiling_cpu"] for r in runs)
    return dict(
        env_id=env_id,
        num_envs=n,
        vectorization=vectorization,
        rollout_steps=cfg.rollout_steps,
        sampler=sampler,
        threads=torch.get_num_threads(),
        runs=runs,
        ceiling=limit,
        collect=rate,
        fraction=paired,
        ceiling_cpu=statistics.median(r["ceiling_cpu"] for r in runs),
        collect_cpu=statistics.median(r["collect_cpu"] for r in runs),
        fraction_cpu=paired_cpu,
    )


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["kind"] == "policygrad":
        return run_policygrad(spec)
    if spec["kind"] == "sb3":
        return run_sb3(spec)
    if spec["kind"] == "preset_rollout":
        return preset_rollout(spec["env_id"], spec["seconds"], spec["repeats"])
    return {"rows": rollout_table(spec["env_id"], spec["sizes"], spec["seconds"])}


def launch(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec in a fresh interpreter and return its JSON result."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"run {spec} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {spec['kind']:10s} {spec.get('algo', ''):4s} {spec.get('env_id', '')} seed {spec.get('seed', '-')}: "
          f"{_brief(result)}", file=sys.stderr, flush=True)  # fmt: skip
    return result


def _brief(result: dict[str, Any]) -> str:
    if "rows" in result:
        return f"{len(result['rows'])} sizes"
    if "fraction" in result:
        return f"ceiling {result['ceiling']:,.0f}, collect {result['collect']:,.0f} steps/s ({result['fraction']:.0%})"
    reached = result.get("target_reached_train_seconds")
    return (
        f"{result['steps_per_second']:,.0f} steps/s, {result['train_seconds']:.2f} s"
        + (f", target at {result['target_reached_step']:,} steps / {reached:.2f} s" if reached is not None else "")
        + f", peak RSS {result['peak_rss_mb']:.0f} MB"
    )


# ----- the benchmark ---------------------------------------------------------------------------------
def side_by_side(
    pairs: list[tuple[str, dict[str, Any], dict[str, Any]]], seeds: list[int], native: bool = False, repeats: int = 1
) -> dict[str, Any]:
    """For each (name, policygrad spec, sb3 spec): both libraries, seed by seed, alternating.

    With ``native``, policygrad also runs each seed on Gymnasium's native vectorised
    CartPole (``vectorization = "native"``; the same hyperparameters) and with the autograd
    learner (``learner = "autograd"``: the reference, no kernel). With ``repeats`` > 1
    (throughput only), each library runs each seed that many times, still alternating, and
    keeps its fastest run: on a shared machine the fastest run is the least disturbed one
    (timeit's rule). Every run's steps/s is kept in ``repeat_steps_per_second``.
    """
    out: dict[str, Any] = {}
    for name, pg_spec, sb3_spec in pairs:
        native_spec = dict(pg_spec, overrides=dict(pg_spec.get("overrides", {}), vectorization="native"))
        specs = {"sb3": dict(sb3_spec, kind="sb3"), "policygrad": dict(pg_spec, kind="policygrad")}
        autograd_spec = dict(pg_spec, overrides=dict(pg_spec.get("overrides", {}), learner="autograd"))
        if native:
            specs["policygrad_native"] = dict(native_spec, kind="policygrad")
            specs["policygrad_autograd"] = dict(autograd_spec, kind="policygrad")
        out[name] = {key: [] for key in specs} | {"policygrad_config": pg_spec, "sb3_config": sb3_spec}
        for seed in seeds:
            runs: dict[str, list[dict[str, Any]]] = {key: [] for key in specs}
            for _ in range(repeats):
                for key, spec in specs.items():
                    runs[key].append(launch(dict(spec, seed=seed)))
            for key, results in runs.items():
                best = dict(max(results, key=lambda r: r["steps_per_second"]))
                if repeats > 1:
                    best["repeat_steps_per_second"] = [r["steps_per_second"] for r in results]
                out[name][key].append(best)
    return out


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if len(known) == len(values) and known else None


def median_time_to_target(runs: list[dict[str, Any]]) -> tuple[float | None, bool]:
    """Median training seconds to the target, a run that never reached it counting as slower than any.

    Returns ``(seconds, exact)``: with ``exact`` False the median run did not reach the target, and
    ``seconds`` (its whole training time) is only a lower bound.
    """
    reached = sorted(r["target_reached_train_seconds"] for r in runs if r["target_reached_step"] is not None)
    unreached = sorted(r["train_seconds"] for r in runs if r["target_reached_step"] is None)
    ordered = [(v, True) for v in reached] + [(v, False) for v in unreached]
    # odd counts: the middle; even counts: the upper middle, so an unreached run is never averaged away
    return ordered[len(ordered) // 2]


def every(runs: list[dict[str, Any]]) -> list[float]:
    """The steps/s of every repeat of every seed."""
    return [v for r in runs for v in r.get("repeat_steps_per_second", [r["steps_per_second"]])]


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def iqm_ci(values: list[float | None], digits: int = 2) -> str:
    """``IQM [low, high]`` over the seeds: ``policygrad report``'s 95 % stratified bootstrap CI (rliable).

    A run that never reached the target has no time to average: the cell then says how many did not.
    """
    missing = sum(v is None for v in values)
    if missing:
        return f"— ({missing} of {len(values)} not reached)"
    from policygrad.reports import interval_estimates  # the function policygrad report uses

    iqm = interval_estimates(values)["iqm"]
    low, high = iqm["ci"]
    return f"{fmt(iqm['value'], digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def markdown(results: dict[str, Any], seeds: list[int]) -> str:
    meta = results["machine"]
    lines = [
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores), torch {meta['torch']} "
        f"(1 thread), Stable-Baselines3 {meta['sb3']}, gymnasium {meta['gymnasium']}; "
        f"load average {meta['load_before']} before, {meta['load_after']} after. "
        "Medians over seeds " + ", ".join(map(str, seeds)) + "; IQM [95 % CI]: interquartile mean over the seeds "
        "with its stratified bootstrap confidence interval, by `policygrad report`'s function (rliable).",
        "",
    ]
    for again in meta.get("reruns", []):
        lines[-1:] = [
            f"Target(s) {', '.join(map(str, again['targets']))} measured again {again['date']} "
            f"(load average {again['load_before']} before, {again.get('load_after', '?')} after).",
            "",
        ]
    seed_cols = " | ".join(f"seed {s}" for s in seeds)
    dashes = "|".join(["---"] * (len(seeds) + 5))
    if "throughput" in results:
        lines += [
            "**1. Same work** — SB3-zoo hyperparameters in both libraries, CartPole-v1, env steps/s of training "
            "(no evaluation)"
            + (
                f"; each seed the fastest of {n} runs per library, alternating (the least disturbed run on a shared "
                "machine)"
                if (n := results.get("throughput_repeats", 1)) > 1
                else ""
            )
            + ". Target: policygrad ≥ 3× SB3.",
            "",
            f"| algorithm | library | {seed_cols} | median | IQM [95 % CI] | policygrad / SB3 |",
            f"|{dashes}|",
        ]
        for name, runs in results["throughput"].items():
            sb = [r["steps_per_second"] for r in runs["sb3"]]
            lines.append(
                f"| {name} | SB3 | "
                + " | ".join(fmt(v, 0) for v in sb)
                + f" | {fmt(median(sb), 0)} | {iqm_ci(sb, 0)} | |"
            )
            for key, label in (
                ("policygrad", "policygrad"),
                ("policygrad_native", "policygrad, native vector env"),
                ("policygrad_autograd", "policygrad, autograd learner"),
            ):
                if key not in runs:
                    continue
                pg = [r["steps_per_second"] for r in runs[key]]
                ratio = median(pg) / median(sb)
                lines.append(
                    f"| {name} | {label} | " + " | ".join(fmt(v, 0) for v in pg) + f" | {fmt(median(pg), 0)} | "
                    f"{iqm_ci(pg, 0)} | **{ratio:.1f}×** |"
                )
        spread = [
            f"{name} {statistics.median(every(runs['policygrad'])) / statistics.median(every(runs['sb3'])):.2f}×"
            for name, runs in results["throughput"].items()
            if "repeat_steps_per_second" in runs["sb3"][0]
        ]
        if spread:
            lines += [
                "",
                "Median over every run rather than each seed's fastest (policygrad / SB3): " + ", ".join(spread) + ".",
            ]
        lines.append("")
    for key, title in [
        ("solve", "**2. Time to solve CartPole-v1** — each library's own configuration (policygrad's preset, "
         "the SB3 zoo's) until a deterministic 10-episode mean ≥ 475; evaluation every 4,096 env steps, "
         "excluded. Training seconds (env steps). Targets: PPO ≤ 1/5 of SB3's time, A2C ≤ 1/3."),
        ("continuous", "**3. Pendulum-v1 (mean ≥ −200) and Acrobot-v1 (≥ −100)**, PPO, same protocol. "
         "Target: ≤ 1/3 of SB3-zoo PPO's time."),
        ("lunar", "**6. LunarLander-v3 (mean ≥ 200)**, PPO, same protocol, evaluation every 16,384 env steps; "
         "each run capped at 1M env steps. Target: ≤ 1/3 of SB3-zoo PPO's time."),
    ]:  # fmt: skip
        if key not in results:
            continue
        lines += [
            title,
            "",
            f"| task | library | {seed_cols} | median | IQM [95 % CI] | SB3 / policygrad |",
            f"|{dashes}|",
        ]
        for name, runs in results[key].items():
            medians = {lib: median_time_to_target(runs[lib]) for lib in ("sb3", "policygrad")}
            for lib in ("sb3", "policygrad"):
                text = [
                    f"{fmt(r['target_reached_train_seconds'])} ({r['target_reached_step']:,})"
                    if r["target_reached_step"] is not None
                    else f"not reached ({fmt(r['train_seconds'])} s, {r['env_steps']:,})"
                    for r in runs[lib]
                ]
                label = "SB3 zoo" if lib == "sb3" else "policygrad preset"
                (med, exact) = medians[lib]
                med_text = fmt(med) if exact else f"> {fmt(med)}"
                ratio = ""
                if lib == "policygrad" and exact:
                    sb3_med, sb3_exact = medians["sb3"]
                    ratio = f"**{'≥ ' if not sb3_exact else ''}{sb3_med / med:.1f}×**"
                times = [
                    r["target_reached_train_seconds"] if r["target_reached_step"] is not None else None
                    for r in runs[lib]
                ]
                lines.append(
                    f"| {name} | {label} | " + " | ".join(text) + f" | {med_text} | {iqm_ci(times)} | {ratio} |"
                )
        lines.append("")
    if "rollout" in results:
        lines += [
            "**4. Rollout collection against its ceiling** (env step + one batched policy forward, nothing else), "
            "CartPole-v1, the default vector env (the batched replica, per-env seeded), env steps/s. "
            "Target: ≥ 50 % at the preset's 16 envs.",
            "",
            "| num_envs | ceiling | RolloutCollector.collect | fraction |",
            "|---|---|---|---|",
        ]
        for row in results["rollout"]:
            lines.append(
                f"| {row['num_envs']} | {row['ceiling']:,.0f} | {row['collect']:,.0f} | {100 * row['fraction']:.0f} % |"
            )
        lines.append("")
    if "solve" in results:
        lines += [
            "**5. Peak resident memory** of the time-to-solve runs (MB, median over seeds). Target: policygrad ≤ SB3.",
            "",
            "| run | SB3 | policygrad |",
            "|---|---|---|",
        ]
        for name, runs in results["solve"].items():
            sb = median([r["peak_rss_mb"] for r in runs["sb3"]])
            pg = median([r["peak_rss_mb"] for r in runs["policygrad"]])
            lines.append(f"| {name} | {fmt(sb, 0)} | {fmt(pg, 0)} |")
        lines.append("")
    return "\n".join(lines)


def same_work(env_ids: list[str], seeds: list[int], steps: int, repeats: int) -> dict[str, Any]:
    """PPO with the RL zoo's hyperparameters in both libraries for ``steps`` env steps on each of ``env_ids``.

    policygrad runs its preset for the environment where that translates the zoo's entry, else the
    translation in ``ZOO_TRANSLATED``; SB3 runs the zoo's entry itself (``ZOO``); no evaluation during
    training, the libraries alternating.
    """
    unknown = [env_id for env_id in env_ids if env_id not in SAME_WORK_TARGETS]
    if unknown:  # (CartPole's preset is policygrad's own: target 1 runs the zoo's settings there)
        known = ", ".join(SAME_WORK_TARGETS)
        raise SystemExit(f"--envs: no preset translating the zoo's entry for {', '.join(unknown)} (known: {known})")
    pairs = [
        (
            env_id,
            dict(
                algo="ppo",
                env_id=env_id,
                overrides=dict(ZOO_TRANSLATED.get(env_id, {}), total_steps=steps, eval_every=0, target_return=None),
            ),
            dict(algo="ppo", env_id=env_id, total_steps=steps),
        )
        for env_id in env_ids
    ]
    return side_by_side(pairs, seeds, repeats=repeats)


def same_work_markdown(results: dict[str, Any]) -> str:
    """The ``--envs`` table: each library's training steps/s, their ratio against the target, peak RSS."""
    meta, runs_by_env = results["machine"], results["same_work"]
    lines = [
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores), torch {meta['torch']} (1 thread), "
        f"Stable-Baselines3 {meta['sb3']}, gymnasium {meta['gymnasium']}; load average {meta['load_before']} "
        f"before, {meta['load_after']} after. Command: `{results['command']}`.",
        "",
        f"**Same work beyond classic control** — PPO with the RL zoo's hyperparameters in both libraries, "
        f"{results['steps']:,} env steps, seed(s) {', '.join(map(str, results['seeds']))}, env steps/s of training "
        "(no evaluation; the median over seeds"
        + (f", each seed the fastest of {results['repeats']} runs" if results["repeats"] > 1 else "")
        + "); peak resident memory (MB, median) of the whole run, its final evaluation included.",
        "",
        "| environment | SB3 steps/s | policygrad steps/s | policygrad / SB3 | target | met | "
        "SB3 peak RSS | policygrad peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env_id, runs in runs_by_env.items():
        sb = median([r["steps_per_second"] for r in runs["sb3"]])
        pg = median([r["steps_per_second"] for r in runs["policygrad"]])
        ratio, target = pg / sb, SAME_WORK_TARGETS.get(env_id)
        met = "—" if target is None else "yes" if ratio >= target else "no"
        rss = {lib: median([r["peak_rss_mb"] for r in runs[lib]]) for lib in ("sb3", "policygrad")}
        lines.append(
            f"| {env_id} | {fmt(sb, 0)} | {fmt(pg, 0)} | **{ratio:.2f}×** | "
            + (f"≥ {target:g}×" if target is not None else "—")
            + f" | {met} | {fmt(rss['sb3'], 0)} | {fmt(rss['policygrad'], 0)} |"
        )
    return "\n".join(lines)


def rollouts_markdown(results: dict[str, Any]) -> str:
    """The ``--rollouts`` table: each preset's rollout collection against its ceiling."""
    meta = results["machine"]
    lines = [
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores), torch {meta['torch']}, "
        f"gymnasium {meta['gymnasium']}; load average {meta['load_before']} before, {meta['load_after']} after. "
        f"Command: `{results['command']}`.",
        "",
        "**Rollout collection against its ceiling**, the PPO preset's own run: its vector env, wrappers, agent "
        "and rollout sampler as `Trainer.new` builds them. Ceiling: that vector env stepped with the agent's "
        "deterministic action (Gaussian mean, categorical argmax) from one batched forward per vector step, "
        f"nothing else; collection: `RolloutCollector.collect` as the trainer calls it. Env steps/s, the median "
        f"of {results['repeats']} alternating runs of {results['seconds']:g} s each; the fraction is the median of "
        "each collection run over the ceiling run just before it. The same per second of the process's CPU time "
        "(one torch thread, the envs stepped in the process) follows in brackets: the machine's other load drops "
        "out of it. Target: ≥ 50 % (wall clock).",
        "",
        "| environment | num_envs (vector env) | rollout sampler | ceiling steps/s | collect steps/s | fraction | "
        "target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rollouts"]:
        met = "yes" if row["fraction"] >= 0.5 else "no"
        lines.append(
            f"| {row['env_id']} | {row['num_envs']} ({row['vectorization']}) | {row['sampler']} | "
            f"{row['ceiling']:,.0f} ({row['ceiling_cpu']:,.0f}) | {row['collect']:,.0f} ({row['collect_cpu']:,.0f}) | "
            f"**{100 * row['fraction']:.0f} %** ({100 * row['fraction_cpu']:.0f} %) | ≥ 50 % | {met} |"
        )
    return "\n".join(lines)


def machine(load_before: str) -> dict[str, Any]:
    import gymnasium
    import stable_baselines3
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "sb3": stable_baselines3.__version__,
        "gymnasium": gymnasium.__version__,
        "load_before": load_before,
    }


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--targets", type=int, nargs="+", default=[1, 2, 3, 4], help="default 1-4 (5 comes with 2); 6: LunarLander-v3"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0-4 (with --envs: 0)")
    parser.add_argument(
        "--repeats", type=int, help="runs per seed and library for target 1 or --envs, the fastest kept (default 3; "
        "with --envs 1)",
    )  # fmt: skip
    parser.add_argument(
        "--envs", nargs="+", metavar="ENV_ID",
        help="instead of the targets: same work, PPO with the zoo's hyperparameters, on these environments (e.g. "
        + " ".join(SAME_WORK_TARGETS) + ")",
    )  # fmt: skip
    parser.add_argument(
        "--rollouts", nargs="+", metavar="ENV_ID",
        help="instead of the targets: rollout collection against its ceiling for the PPO preset of each of these "
        "environments (e.g. HalfCheetah-v5 ALE/Breakout-v5); --repeats runs of --seconds each, the median kept",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of each --rollouts measurement (default 4)")
    parser.add_argument(
        "--steps", type=int, default=SAME_WORK_STEPS, help=f"env steps per --envs run (default {SAME_WORK_STEPS:,})"
    )
    parser.add_argument("--out", type=Path, help="results' path without suffix (default benchmarks/results/vs_sb3, "
                        "with --envs vs_sb3_envs)")  # fmt: skip
    parser.add_argument(
        "--merge", action="store_true", help="keep the other targets' results already in --out's JSON (same seeds)"
    )
    parser.add_argument("--report", action="store_true", help="only re-render the Markdown table from --out's JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    args.out = args.out or RESULTS / ("vs_sb3_envs" if args.envs else "vs_sb3_rollouts" if args.rollouts else "vs_sb3")
    args.seeds = args.seeds or ([0] if args.envs else [0, 1, 2, 3, 4])
    args.repeats = args.repeats or (1 if args.envs else 3)
    if args.report:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        if "rollouts" in saved:
            text = rollouts_markdown(saved)
        else:
            text = same_work_markdown(saved) if "same_work" in saved else markdown(saved, saved["seeds"])
        args.out.with_suffix(".md").write_text(text + "\n")
        print(text)
        return

    results: dict[str, Any] = {"machine": machine(load_average()), "seeds": args.seeds}
    command = "python benchmarks/vs_sb3.py " + " ".join(sys.argv[1:])
    if args.rollouts:
        results = dict(machine=results["machine"], command=command, seconds=args.seconds, repeats=args.repeats)
        spec = dict(kind="preset_rollout", seconds=args.seconds, repeats=args.repeats)
        results["rollouts"] = [launch(dict(spec, env_id=env_id)) for env_id in args.rollouts]
        results["machine"]["load_after"] = load_average()
        write_results(args.out, results, rollouts_markdown(results))
        return
    if args.envs:
        results.update(command=command, steps=args.steps, repeats=args.repeats)
        results["same_work"] = same_work(args.envs, args.seeds, args.steps, args.repeats)
        results["machine"]["load_after"] = load_average()
        write_results(args.out, results, same_work_markdown(results))
        return
    if args.merge and args.out.with_suffix(".json").exists():
        saved = json.loads(args.out.with_suffix(".json").read_text())
        if saved.get("seeds") != args.seeds:
            raise SystemExit(f"--merge: the saved results have seeds {saved.get('seeds')}, not {args.seeds}")
        rerun = dict(results["machine"], targets=args.targets)
        results = dict(saved, machine=dict(saved["machine"], reruns=[*saved["machine"].get("reruns", []), rerun]))
    if 1 in args.targets:
        print("1. same work (zoo hyperparameters)", file=sys.stderr)
        pairs = [
            (
                f"{algo.upper()} (zoo)",
                dict(
                    algo=algo,
                    env_id="CartPole-v1",
                    overrides=dict(
                        ZOO_IN_POLICYGRAD[algo], total_steps=THROUGHPUT_STEPS[algo], eval_every=0, target_return=None
                    ),
                ),  # fmt: skip
                dict(algo=algo, env_id="CartPole-v1", total_steps=THROUGHPUT_STEPS[algo]),
            )
            for algo in ("ppo", "a2c")
        ]
        results["throughput"] = side_by_side(pairs, args.seeds, native=True, repeats=args.repeats)
        results["throughput_repeats"] = args.repeats
    solve = [(algo, "CartPole-v1") for algo in ("ppo", "a2c")] if 2 in args.targets else []
    other = [("ppo", env) for env in ("Pendulum-v1", "Acrobot-v1")] if 3 in args.targets else []
    lunar = [("ppo", "LunarLander-v3")] if 6 in args.targets else []
    for key, tasks in (("solve", solve), ("continuous", other), ("lunar", lunar)):
        if tasks:
            print(f"{key}: time to target", file=sys.stderr)
            pairs = [
                (
                    f"{algo.upper()} {env_id}",
                    dict(
                        algo=algo, env_id=env_id, overrides=dict(target_return=TARGETS[env_id], eval_every=eval_every)
                    ),
                    dict(algo=algo, env_id=env_id, target=TARGETS[env_id], eval_every=eval_every),
                )
                for algo, env_id in tasks
                for eval_every in [EVAL_EVERY_FOR.get(env_id, EVAL_EVERY)]
            ]
            results[key] = side_by_side(pairs, args.seeds)
    if 4 in args.targets:
        print("4. rollout collection against its ceiling", file=sys.stderr)
        sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
        results["rollout"] = launch(dict(kind="rollout", env_id="CartPole-v1", sizes=sizes, seconds=1.0))["rows"]
    (results["machine"]["reruns"][-1] if args.merge else results["machine"])["load_after"] = load_average()
    write_results(args.out, results, markdown(results, args.seeds))


def write_results(out: Path, results: dict[str, Any], text: str) -> None:
    """``out``.json (every run's numbers) and ``out``.md (the table), and the table on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
