"""Learning parity on MuJoCo: policygrad and Stable-Baselines3 at the RL zoo's HalfCheetah and Hopper settings.

    pip install 'policygrad[bench,mujoco]'
    python benchmarks/mujoco_parity.py                          # 100k steps, seeds 0-2, both libraries
    python benchmarks/mujoco_parity.py --variant joint --variant apart:grad_clip=per-network --no-sb3 --jobs 6
    python benchmarks/mujoco_parity.py --env Hopper-v5 --steps 1000000 --seeds 0 1 --eval-every 100000 --no-policygrad

``--env Hopper-v5`` runs the zoo's ``Hopper-v4`` entry in SB3 and its translation in policygrad
(``vs_sb3.ZOO_TRANSLATED``; policygrad's Hopper-v5 preset itself follows CleanRL). ``--eval-every N``
adds each run's deterministic evaluations during training (the same 10 episodes, statistics frozen)
as a learning-curve table; the results are also written to
``benchmarks/results/mujoco_parity_<env>.json``.

Both libraries train PPO on HalfCheetah-v5 with the hyperparameters of rl-baselines3-zoo's
``hyperparams/ppo.yml`` entry ``HalfCheetah-v4`` (commit 22e3ff2, the newest MuJoCo entry it
has, used for v5 as it is), then play the same 10 deterministic episodes
(``vs_sb3.evaluation_episodes``: the seeds policygrad's own evaluation plays) with the
observation statistics frozen. Every run is a fresh subprocess on one torch thread, and the
libraries alternate seed by seed, so a change in the machine's load hits both (``--jobs N``
runs N at once: the returns are the same, the steps/s then measure a shared machine). The table
gives each library's final evaluation return as mean ± std over the seeds (population std),
its training steps/s and its peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from vs_sb3 import RESULTS, ZOO, ZOO_TRANSLATED, launch, load_average  # noqa: E402 - the subprocess runner, evaluation and zoo are shared

ENV_ID = "HalfCheetah-v5"
ENV_IDS = ("HalfCheetah-v5", "Hopper-v5")

# SB3 runs the zoo's entries from vs_sb3.ZOO: rl-baselines3-zoo, hyperparams/ppo.yml, HalfCheetah-v4 and
# Hopper-v4 (normalize: true is VecNormalize with its defaults: observations and rewards, both clipped at
# ±10, the reward's return discounted by gamma); vs_sb3.py --envs runs the same entries. policygrad runs
# their translation, vs_sb3.ZOO_TRANSLATED, whatever its presets hold.


def curve_table(rows: list[str], specs: list[tuple[str, dict[str, Any]]], results: list[dict[str, Any]]) -> str:
    """Markdown: one line per evaluation step, one column per run (row and seed), returns rounded."""
    columns = [
        (name, spec["seed"], result.get("eval_curve") or [])
        for (name, spec), result in zip(specs, results, strict=True)
    ]
    columns.sort(key=lambda column: (rows.index(column[0]), column[1]))
    steps = sorted({round(step, -3) for _, _, curve in columns for step, _ in curve})
    lines = ["| env steps | " + " | ".join(f"{name} seed {seed}" for name, seed, _ in columns) + " |"]
    lines.append("|---:|" + "---:|" * len(columns))
    for step in steps:
        cells = [next((f"{value:,.0f}" for at, value in curve if round(at, -3) == step), "") for _, _, curve in columns]
        lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:,.0f} ± {statistics.pstdev(values):,.0f}" if len(values) > 1 else f"{mean:,.0f}"


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE``: a policygrad row with settings on top of the zoo's."""
    name, _, settings = text.partition(":")
    return name, dict(pair.split("=", 1) for pair in settings.split(",") if pair)


def initial_action_spread() -> None:
    """How far the initial policy's mean action moves from state to state, by initialisation (no training).

    States: 2,000 steps of uniform random actions, standardised; 3 seeds of each initialisation.
    """
    import gymnasium as gym
    import numpy as np
    import torch

    from policygrad.agent import Agent, AgentSpec

    env, rng = gym.make(ENV_ID), np.random.default_rng(0)
    env.reset(seed=0)
    obs = np.array([env.step(rng.uniform(-1, 1, 6))[0] for _ in range(2000)])
    x = torch.tensor((obs - obs.mean(0)) / (obs.std(0) + 1e-8), dtype=torch.float32)
    for ortho in (True, False):
        spreads = []
        for seed in range(3):
            torch.manual_seed(seed)
            agent = Agent(AgentSpec(17, False, 6, (256, 256), "relu", True, -2.0, ortho_init=ortho))
            with torch.no_grad():
                spreads.append(agent.actor(x).std(0).mean().item())
        print(f"ortho_init={ortho}: std of the mean action across states {np.mean(spreads):.3f} (σ = e^-2 = 0.135)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per run (default 100,000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--variant", action="append", default=None, metavar="NAME[:KEY=VALUE,...]",
        help="a policygrad row (repeatable; default: one row 'policygrad' at the zoo's settings)",
    )  # fmt: skip
    parser.add_argument("--env", choices=ENV_IDS, default=ENV_ID, help=f"environment (default {ENV_ID})")
    parser.add_argument("--no-sb3", action="store_true", help="leave Stable-Baselines3 out")
    parser.add_argument("--no-policygrad", action="store_true", help="leave policygrad out (SB3 alone)")
    parser.add_argument(
        "--eval-every", type=int, default=0, metavar="N",
        help="also evaluate every N env steps during training and print the learning curves (default: at the end only)",
    )  # fmt: skip
    parser.add_argument("--init", action="store_true", help="only measure the initial policies' action spread")
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="runs at once (default 1: one at a time, alternating); with more, steps/s are measured under each "
        "other's load",
    )  # fmt: skip
    args = parser.parse_args()
    if args.init:
        return initial_action_spread()
    variants = {} if args.no_policygrad else dict(parse_variant(v) for v in (args.variant or ["policygrad"]))
    rows = [*variants, *([] if args.no_sb3 else ["sb3"])]
    if not rows:
        parser.error("--no-sb3 and --no-policygrad leave nothing to run")
    specs: list[tuple[str, dict[str, Any]]] = []
    for seed in args.seeds:  # alternating, seed by seed
        for row in rows:
            spec: dict[str, Any] = dict(algo="ppo", env_id=args.env, seed=seed, total_steps=args.steps)
            if row == "sb3":
                spec.update(kind="sb3", hyperparams=ZOO[("ppo", args.env)], eval_every=args.eval_every)
            else:
                settings = dict(ZOO_TRANSLATED[args.env], total_steps=args.steps, eval_every=args.eval_every)
                spec.update(kind="policygrad", overrides=dict(settings, **variants[row]))
            specs.append((row, spec))
    load_before = load_average()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each run is its own subprocess
        results = list(pool.map(lambda item: launch(item[1]), specs))
    command = "python benchmarks/mujoco_parity.py " + " ".join(sys.argv[1:])
    print(f"\nPPO on {args.env}, the RL zoo's settings, {args.steps:,} env steps, seeds {args.seeds}")
    print(f"command: {command.strip()}")
    print(f"load average before / after: {load_before} / {load_average()} (2 shared cores, {args.jobs} run(s) at once)")
    for name, extra in variants.items():
        settings = ", ".join(f"{k}={v}" for k, v in extra.items())
        print(f"{name}: the zoo's settings" + (f" with {settings}" if settings else ""))
    print("\n| library | eval return (mean ± std) | per seed | train steps/s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for row in rows:
        runs = [result for (name, _), result in zip(specs, results, strict=True) if name == row]
        returns = [r["final_eval_mean"] for r in runs]
        per_seed = ", ".join(f"{v:,.0f}" for v in returns)
        rates, rss = [r["steps_per_second"] for r in runs], [r["peak_rss_mb"] for r in runs]
        print(f"| {row} | {spread(returns)} | {per_seed} | {spread(rates)} | {spread(rss)} |")
    if args.eval_every:
        print(f"\nDeterministic evaluation during training (10 episodes, every {args.eval_every:,} env steps):\n")
        print(curve_table(rows, specs, results))
    out = RESULTS / f"mujoco_parity_{args.env.split('-')[0].lower()}.json"
    out.write_text(json.dumps(dict(command=command.strip(), load_before=load_before, runs=[
        dict(row=name, **spec, result=result) for (name, spec), result in zip(specs, results, strict=True)
    ]), indent=1) + "\n")  # fmt: skip
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
