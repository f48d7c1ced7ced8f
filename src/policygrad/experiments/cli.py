"""``policygrad experiment NAME [--out DIR] [--seed N]`` and ``policygrad experiment --list``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from policygrad.errors import PolicygradError

HELP = "run a reproducible experiment: a PNG figure, a JSON of numbers and a Markdown note"
DESCRIPTION = "Each experiment turns one claim of the theory into a figure and numbers."


def _cmd_experiment(args: argparse.Namespace) -> int:
    from policygrad.experiments import EXPERIMENTS, list_experiments, run_experiment

    if args.list:
        width = max(map(len, EXPERIMENTS))
        for name, summary in list_experiments().items():
            print(f"{name:<{width}}  {summary}")
        return 0
    if not args.name:
        raise PolicygradError(
            "name an experiment, e.g. 'policygrad experiment bandit' (see: policygrad experiment --list)"
        )
    options: dict[str, Any] = {}
    if args.actions is not None:
        if args.name != "bandit":
            raise PolicygradError("--actions applies to the bandit experiment only")
        options["actions"] = args.actions
    paths, report = run_experiment(args.name, out=args.out, seed=args.seed, quick=args.quick, **options)
    if not args.quiet:
        print(
            f"{args.name} (seed {args.seed}) in {report.timing['runtime_seconds']:.1f} s: "
            f"{paths['png']}  {paths['json']}  {paths['md']}",
            file=sys.stderr,
        )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``experiment`` command to the ``policygrad`` CLI."""
    from policygrad.cli import add_command

    parser = add_command(subparsers, "experiment", _cmd_experiment, HELP, DESCRIPTION)
    parser.add_argument("name", nargs="?", help="the experiment (see --list)")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--out", help="output folder (default runs/experiments/NAME-seedN)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random source (default 0)")
    parser.add_argument("--actions", help="bandit only: a fixed sequence of arms to pull, e.g. CCAB")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test (numbers only indicative)")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
