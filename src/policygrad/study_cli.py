"""``policygrad sweep``, ``policygrad report`` and ``policygrad tune``: many runs, their statistics, and tuning."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from policygrad.errors import PolicygradError


def _cmd_sweep(args: argparse.Namespace) -> int:
    from policygrad.sweeps import parse_grid, parse_seeds, sweep

    where = {"workers": args.workers, "backend": args.backend, "ray_address": args.ray_address}
    if args.ray_address and args.backend != "ray":
        raise PolicygradError("--ray-address joins a Ray cluster for --backend ray; add --backend ray")
    if args.resume:
        if args.algo or args.env_id or args.set or args.steps or args.out:
            raise PolicygradError(
                "--resume DIR continues the sweep as planned in DIR/sweep.json; give only --seeds (to add seeds), "
                "--workers and --backend"
            )
        result = sweep(out=args.resume, resume=True, add_seeds=args.seeds, quiet=args.quiet, **where)
    else:
        if not (args.algo and args.env_id and args.out):
            raise PolicygradError("usage: policygrad sweep ALGO ENV_ID --seeds 0-9 --out DIR (or --resume DIR)")
        result = sweep(
            args.algo,
            args.env_id,
            out=args.out,
            seeds=parse_seeds(args.seeds or "0-9"),
            grid=parse_grid(args.algo, args.set or []),
            steps=args.steps,
            quiet=args.quiet,
            **where,
        )
    if not args.quiet:
        print(
            f"{result['finished']} runs finished in {result['dir']}; summarise them with "
            f"'policygrad report {result['dir']}'",
            file=sys.stderr,
        )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from policygrad.reports import report

    result = report(args.dirs, out=args.out, target=args.target, reps=args.reps, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    out = args.out or args.dirs[0]
    for s in result["settings"]:
        if s["runs"]:
            low, high = s["iqm"]["ci"]
            runs = len(s["runs"])
            print(f"{s['rank']}. {s['name']}: IQM {s['iqm']['value']:.1f} [{low:.1f}, {high:.1f}] over {runs} runs")
    print(f"report: {out}/report.md  {out}/report.json  {out}/learning_curves.png", file=sys.stderr)
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from policygrad.tuner import tune

    best = tune(
        args.algo,
        args.env_id,
        out=args.out,
        trials=args.trials,
        steps=args.steps,
        timeout=args.timeout,
        workers=args.workers,
        storage=args.storage,
        seed=args.seed,
        quiet=args.quiet,
    )
    print(
        f"best: trial {best['trial']}, final evaluation {best['value']:.1f}; preset {best['preset']} "
        f"(train with it: policygrad train {args.algo} {args.env_id} --preset {best['preset']})",
        file=sys.stderr,
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``sweep``, ``report`` and ``tune`` to the ``policygrad`` CLI."""
    from policygrad.cli import add_command

    sweep = add_command(subparsers, "sweep", _cmd_sweep, "train over seeds and a grid of settings, in parallel")
    sweep.add_argument("algo", nargs="?", help="reinforce, reinforce-baseline, actor-critic, a2c or ppo")
    sweep.add_argument("env_id", nargs="?", help="a Gymnasium environment id, e.g. CartPole-v1")
    sweep.add_argument(
        "--seeds", help="seeds, e.g. 0-9 or 0,3,7 (default 0-9); with --resume, seeds to add to the sweep"
    )
    sweep.add_argument("--steps", type=int, help="environment steps per run (default: the preset's)")
    sweep.add_argument(
        "--set", action="append", metavar="KEY=V1,V2", help="values to sweep (repeatable; hidden_sizes=64,64/256,256)"
    )
    sweep.add_argument("--workers", type=int, help="runs at a time (default: one per core, or per CPU of the cluster)")
    sweep.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="worker processes here (local) or Ray tasks (ray)"
    )
    sweep.add_argument(
        "--ray-address",
        metavar="auto|HOST:PORT",
        help="with --backend ray: join this cluster (default: RAY_ADDRESS, else a private local Ray)",
    )
    sweep.add_argument("--out", help="the sweep folder: sweep.json and one run folder per (setting, seed)")
    sweep.add_argument("--resume", metavar="DIR", help="continue the sweep in DIR")
    sweep.add_argument("--quiet", action="store_true", help="no progress view")

    report = add_command(subparsers, "report", _cmd_report, "IQM, mean and median with bootstrap CIs of sweeps")
    report.add_argument("dirs", nargs="+", metavar="DIR", help="sweep folders")
    report.add_argument("--out", help="where report.md, report.json and the figure go (default: the first DIR)")
    report.add_argument("--target", type=float, help="return for the steps and seconds to target (default: runs')")
    report.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    report.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    report.add_argument("--json", action="store_true", help="print report.json")

    tune = add_command(subparsers, "tune", _cmd_tune, "search hyperparameters with Optuna; writes a preset")
    tune.add_argument("algo")
    tune.add_argument("env_id")
    tune.add_argument("--trials", type=int, default=50, help="finished trials to reach (default 50)")
    tune.add_argument("--steps", type=int, help="environment steps per trial (default: the preset's)")
    tune.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    tune.add_argument("--workers", type=int, default=1, help="processes sharing the study (default 1)")
    tune.add_argument("--storage", metavar="URL", help="Optuna database URL (default sqlite in --out)")
    tune.add_argument("--seed", type=int, default=0, help="seed of every trial's run (default 0)")
    tune.add_argument("--out", required=True, help="the tuning folder: study.db, trials/, best.toml")
    tune.add_argument("--quiet", action="store_true", help="no progress view")
