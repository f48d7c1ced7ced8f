"""``policygrad lm …``: pretrain a reference, fine-tune it with a token algorithm, resume, sample."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from policygrad.errors import PolicygradError


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from policygrad.config import parse_overrides

    return parse_overrides(args.set or [])


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from policygrad.config import build_config
    from policygrad.lm.pretrain import PretrainConfig, check_new_folder, default_reference_dir, pretrain
    from policygrad.lm.tasks import get_task

    get_task(args.task)
    values = _overrides(args)
    for flag, key in (
        ("seed", "seed"),
        ("steps", "steps"),
        ("vocab_size", "vocab_size"),
        ("hf_config", "architecture"),
    ):
        if getattr(args, flag) is not None:
            values[key] = getattr(args, flag)
    cfg = build_config(PretrainConfig, values)
    out = Path(args.out) if args.out else default_reference_dir(args.task, cfg.vocab_size, cfg.seed, cfg.architecture)
    check_new_folder(out)
    _, stats = pretrain(args.task, cfg, out, quiet=args.quiet)
    if args.json:
        print(json.dumps(dict(stats, out=str(out))))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from policygrad.cli import RAY_FLAGS
    from policygrad.config import build_config
    from policygrad.lm.algorithms import get_algorithm
    from policygrad.lm.tasks import get_task
    from policygrad.lm.trainer import LMTrainer, default_run_dir

    module = get_algorithm(args.algo)
    get_task(args.task)
    values = _overrides(args)
    values["task"] = args.task
    for flag, key in (("seed", "seed"), ("updates", "updates"), ("kl_coef", "kl_coef"), *((f, f) for f in RAY_FLAGS)):
        if getattr(args, flag) is not None:
            values[key] = getattr(args, flag)
    try:
        cfg = build_config(module.Config, values)
    except PolicygradError as err:
        raise PolicygradError(str(err).replace("(see: policygrad list)", "(see: policygrad lm list)")) from None
    reference = Path(args.ref) if args.ref else None
    if reference is not None and not reference.is_dir():
        raise PolicygradError(f"--ref {reference} is not a folder (create one: policygrad lm pretrain {args.task})")
    run_dir = Path(args.out) if args.out else default_run_dir(args.algo, args.task, cfg.seed)
    if not args.quiet:
        print(f"lm {args.algo} on {args.task}; run folder {run_dir}", file=sys.stderr)
    trainer = LMTrainer.new(args.algo, cfg, run_dir, reference, args.vocab_size, quiet=args.quiet)
    trainer.run()
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from policygrad.cli import run_to_end
    from policygrad.lm.trainer import LMTrainer

    trainer = LMTrainer.resume(
        Path(args.run_dir), updates=args.updates, quiet=args.quiet, from_checkpoint=args.from_checkpoint
    )
    return run_to_end(trainer, args.run_dir, trainer.update, trainer.cfg.updates, "updates", digits="")


def _cmd_sample(args: argparse.Namespace) -> int:
    from policygrad.lm.sample import sample_folder

    if args.n <= 0:
        raise PolicygradError(f"-n must be positive (got {args.n})")
    rows = sample_folder(Path(args.run_dir), args.n, args.seed, args.temperature)
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        print(f"{row['prompt']}  →  {row['response']}    reward {row['reward']:.3f}")
    mean = sum(r["reward"] for r in rows) / len(rows)
    print(f"mean reward {mean:.3f} over {len(rows)} samples", file=sys.stderr)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from policygrad.config import listed_fields
    from policygrad.lm.algorithms import ADDS, ALGORITHMS
    from policygrad.lm.tasks import TASKS

    for name, module in ALGORITHMS.items():
        print(f"{name}: {ADDS[name]}")
        defaults = module.Config()
        for f in listed_fields(module.Config):
            doc = f.metadata.get("help", "")
            print(f"  {f.name} = {getattr(defaults, f.name)!r}" + (f"  # {doc}" if doc else ""))
        print()
    for name, task in TASKS.items():
        print(f"task {name}: {task().describe()}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``policygrad lm`` and its subcommands to the main parser's ``subparsers``."""
    from policygrad.cli import add_backend_arguments, add_command, add_resume_command, add_run_arguments

    lm = subparsers.add_parser("lm", help="language-model policies: pretrain, RL fine-tuning, sampling")
    sub = lm.add_subparsers(dest="lm_command", metavar="LM_COMMAND", parser_class=type(lm))
    lm.set_defaults(func=lambda _args: (lm.print_help(), 0)[1])

    pre = add_command(sub, "pretrain", _cmd_pretrain, "pretrain a reference model on a task's corpus")
    pre.add_argument("task", help="target, sum or sort")
    add_run_arguments(
        pre,
        "model folder (default runs/lm-ref-<task>-seed<seed>)",
        ("--steps", "optimiser steps"),
        "override a pretraining setting",
        quiet=None,
    )
    pre.add_argument("--vocab-size", type=int, help="vocabulary size (16; e.g. 32000 adds filler tokens)")
    pre.add_argument(
        "--hf-config",
        metavar="ARCH",
        help="pretrain a randomly initialised Hugging Face llama or qwen2 instead (a model folder for --ref)",
    )
    pre.add_argument("--json", action="store_true", help="print the statistics as one JSON object")

    train = add_command(sub, "train", _cmd_train, "fine-tune a reference with reinforce, rloo, grpo or ppo")
    train.add_argument("algo", help="reinforce, rloo, grpo or ppo")
    train.add_argument("task", help="target, sum or sort")
    train.add_argument("--ref", help="reference model folder (default: pretrain one into the run folder)")
    train.add_argument("--kl-coef", type=float, help="β, weight of the KL penalty to the reference")
    add_run_arguments(
        train,
        "run folder (default runs/lm-<algo>-<task>-seed<seed>)",
        ("--updates", "policy updates"),
        "override a setting (repeatable)",
    )
    train.add_argument("--vocab-size", type=int, help="vocabulary of the reference pretrained when --ref is absent")
    add_backend_arguments(train)

    add_resume_command(sub, _cmd_resume, "an lm run", ("--updates", "updates"))

    sample = add_command(sub, "sample", _cmd_sample, "print responses of a run's policy (or of a model folder)")
    sample.add_argument("run_dir", help="lm run folder or model folder")
    sample.add_argument("-n", type=int, default=8, help="number of prompts")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: greedy)")
    sample.add_argument("--json", action="store_true", help="print one JSON list")

    add_command(sub, "list", _cmd_list, "token algorithms, their settings, and the tasks")
