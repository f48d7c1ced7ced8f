"""The ``policygrad`` command.

argparse (standard library) keeps start-up fast and lets every error be one clear line:
bad input never shows a traceback, and always exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from policygrad.errors import PolicygradError

#: `policygrad train` options that are config fields of the same name (docs/distributed.md).
RAY_FLAGS = ("backend", "workers", "ray_address", "worker_cpus", "rollout_timeout", "max_worker_restarts")

#: What ``--trust-run-folder`` allows, in its help.
TRUST_HELP = (
    "unpickle environment state saved as a pickle (envs.pkl, or the Ray workers' pickles in state.json): only "
    "environments policygrad cannot save as data are saved so. Unpickling runs code from the run folder: pass it "
    "only for a folder you or someone you trust wrote. Without it, those environments' episodes restart"
)

FROM_HELP = (
    "continue from the checkpoint of update N instead of the newest (when the newest cannot be read); the newer "
    "checkpoints are set aside and the metrics after update N dropped"
)

#: What a subcommand runs: parsed arguments in, exit status out.
Command = Callable[[argparse.Namespace], int]

#: Commands added by later parts of the package: name → module with ``register(subparsers)``.
EXTENSIONS = ("policygrad.study_cli", "policygrad.experiments.cli", "policygrad.lm.cli", "policygrad.lab.cli")


def add_command(
    subparsers: Any, name: str, func: Command, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """Add the subcommand ``name``, which runs ``func(args)``; the caller adds its arguments."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(func=func)
    return parser


def add_run_arguments(
    parser: argparse.ArgumentParser,
    out: str,
    length: tuple[str, str],
    overrides: str,
    quiet: str | None = "no progress bar or messages",
) -> None:
    """The options of every command that trains: ``--out``, ``--seed``, the length flag, ``--set``, ``--quiet``."""
    parser.add_argument("--out", help=out)
    parser.add_argument("--seed", type=int)
    parser.add_argument(length[0], type=int, help=length[1])
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help=overrides)
    parser.add_argument("--quiet", action="store_true", help=quiet)


def add_resume_command(subparsers: Any, func: Command, what: str, length: tuple[str, str]) -> None:
    """A ``resume RUN_DIR [--steps|--updates N] [--quiet]`` command; ``func`` ends in :func:`run_to_end`."""
    parser = add_command(subparsers, "resume", func, f"continue {what} from its last checkpoint")
    parser.add_argument("run_dir")
    parser.add_argument(length[0], type=int, help=f"new total {length[1]} (extends a finished run)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--trust-run-folder", action="store_true", help=TRUST_HELP)
    parser.add_argument("--from-checkpoint", type=int, metavar="N", help=FROM_HELP)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--backend ray`` options (``RAY_FLAGS``), shared by ``train`` and ``lm train``."""
    ray = parser.add_argument_group("distributed rollouts (docs/distributed.md)")
    ray.add_argument("--backend", choices=("local", "ray"), help="collect rollouts in-process (default) or on Ray")
    ray.add_argument("--workers", type=int, metavar="N", help="Ray rollout workers (default 2)")
    ray.add_argument("--ray-address", metavar="auto|HOST:PORT", help="join this Ray cluster (default: a private one)")
    ray.add_argument("--worker-cpus", type=float, help="CPUs reserved per worker (default 1; fractions allowed)")
    ray.add_argument("--rollout-timeout", type=float, metavar="SECONDS", help="a silent worker counts as hung")
    ray.add_argument("--max-worker-restarts", type=int, metavar="K", help="recreate a failed worker K times (0)")


def run_to_end(trainer: Any, run_dir: str, done: int, total: int, unit: str, digits: str = ",") -> int:
    """Run a resumed ``trainer``; if it already stopped, say how (and write a summary a kill prevented)."""
    if trainer.finished:  # the stop decision is in the checkpoint: never one update more
        wrote = "; wrote the summary it was stopped before writing" if trainer.complete() else ""
        print(f"{run_dir} {trainer.finished_message()}{wrote}; extend it with --{unit} M", file=sys.stderr)
        trainer.close()
        return 0
    trainer.run()
    return 0


def env_kwargs_of(as_json: str | None, pairs: list[str]) -> dict[str, Any]:
    """``--env-kwargs JSON`` then each ``--env-kwarg KEY=VALUE`` (VALUE read as JSON where it parses, else text)."""
    out: dict[str, Any] = {}
    if as_json:
        try:
            out = json.loads(as_json)
        except ValueError as err:
            raise PolicygradError(f"--env-kwargs is not valid JSON ({err}): {as_json!r}") from None
        if not isinstance(out, dict):
            raise PolicygradError(f"--env-kwargs must be a JSON object such as '{{\"size\": 8}}', got {as_json!r}")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PolicygradError(f"--env-kwarg expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, instead of usage + message
        self.exit(2, f"policygrad: error: {message} (see: {self.prog} --help)\n")


def _cmd_train(args: argparse.Namespace) -> int:
    from policygrad.config import parse_overrides, read_preset_file
    from policygrad.env_source import label
    from policygrad.trainer import Trainer, default_run_dir, resolve_config

    overrides: dict[str, Any] = parse_overrides(args.set or [])
    for flag, key in (
        ("seed", "seed"),
        ("steps", "total_steps"),
        ("num_envs", "num_envs"),
        ("target_return", "target_return"),
        *((name, name) for name in RAY_FLAGS),
    ):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    env_kwargs = env_kwargs_of(args.env_kwargs, args.env_kwarg or [])
    if env_kwargs:
        overrides["env_kwargs"] = env_kwargs
    from_file = read_preset_file(args.preset) if args.preset else None
    cfg, preset_used = resolve_config(args.algo, args.env_id, overrides, from_file)
    run_dir = Path(args.out) if args.out else default_run_dir(args.algo, label(args.env_id), cfg.seed)
    trainer = Trainer.new(args.algo, cfg, run_dir, preset_used, quiet=args.quiet)
    if not args.quiet:
        source = f"preset policygrad/presets/{args.algo}/{args.env_id}.toml" if preset_used else "defaults (no preset)"
        source = f"preset {args.preset}" if args.preset else source
        print(f"training {args.algo} on {args.env_id} with {source}; run folder {run_dir}", file=sys.stderr)
    trainer.run()
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from policygrad.trainer import Trainer

    trainer = Trainer.resume(
        Path(args.run_dir),
        total_steps=args.steps,
        quiet=args.quiet,
        trust_run_folder=args.trust_run_folder,
        from_checkpoint=args.from_checkpoint,
    )
    return run_to_end(trainer, args.run_dir, trainer.counters["env_step"], trainer.cfg.total_steps, "steps")


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.episodes <= 0:
        raise PolicygradError(f"--episodes must be positive (got {args.episodes})")
    from policygrad.evaluation import evaluate_run

    result = evaluate_run(args.run_dir, args.episodes, args.seed, args.from_checkpoint)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['algo']} on {result['env_id']} at update {result['update']} ({result['env_step']:,} env steps): "
            f"mean return {result['mean_return']:.2f} ± {result['std_return']:.2f} over {args.episodes} episodes "
            f"(min {result['min_return']:.1f}, max {result['max_return']:.1f})"
        )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from policygrad.algorithms import ADDS, ALGORITHMS
    from policygrad.config import list_presets, listed_fields, load_preset

    presets = list_presets()
    if args.json:
        out = {
            name: {
                "adds": ADDS[name],
                "defaults": module.Config().to_dict(),
                "presets": {env: load_preset(name, env) for env in presets.get(name, [])},
            }
            for name, module in ALGORITHMS.items()
        }
        print(json.dumps(out, indent=2))
        return 0
    for name, module in ALGORITHMS.items():
        print(f"{name}: {ADDS[name]}")
        print(f"  presets: {', '.join(presets.get(name, [])) or '(none)'}")
        for f in listed_fields(module.Config):
            if f.name == "env_id":
                continue
            default = getattr(module.Config(), f.name)
            doc = f.metadata.get("help", "")
            print(f"  {f.name} = {default!r}" + (f"  # {doc}" if doc else ""))
        for env in presets.get(name, []):
            values = ", ".join(f"{k}={v!r}" for k, v in (load_preset(name, env) or {}).items())
            print(f"  preset {env}: {values}")
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="policygrad",
        description="Policy-gradient RL: REINFORCE → baseline → Actor-Critic → A2C → PPO, exact gradients, and a lab.",
    )
    parser.add_argument("--version", action="version", version=f"policygrad {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = add_command(sub, "train", _cmd_train, "train an algorithm on a Gymnasium environment")
    train.add_argument("algo", help="reinforce, reinforce-baseline, actor-critic, a2c or ppo")
    train.add_argument("env_id", help="a Gymnasium id (CartPole-v1), or your own as MODULE:ENV_ID (mypkg.envs:Maze-v0)")
    train.add_argument("--env-kwargs", metavar="JSON", help="keyword arguments for the environment: '{\"size\": 8}'")
    train.add_argument(
        "--env-kwarg", action="append", metavar="KEY=VALUE", help="one environment keyword argument (repeatable)"
    )
    add_run_arguments(
        train,
        "run folder (default runs/<algo>-<env>-seed<seed>)",
        ("--steps", "environment steps (total_steps)"),
        "override a hyperparameter (repeatable)",
    )
    train.add_argument("--num-envs", type=int)
    train.add_argument("--target-return", type=float, help="stop once a deterministic evaluation reaches this")
    train.add_argument("--preset", metavar="FILE", help="hyperparameters from this TOML file (e.g. tune's best.toml)")
    add_backend_arguments(train)

    ev = add_command(sub, "eval", _cmd_eval, "evaluate a run's policy deterministically")
    ev.add_argument("run_dir")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--from-checkpoint", type=int, metavar="N", help="score update N's checkpoint (default: newest)")

    add_resume_command(sub, _cmd_resume, "a run", ("--steps", "environment steps"))

    ls = add_command(sub, "list", _cmd_list, "algorithms, presets and their hyperparameters")
    ls.add_argument("--json", action="store_true")

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                continue  # that part of the package is not present
            raise
        module.register(sub)
    return parser


def _version() -> str:
    import policygrad

    return policygrad.__version__


def written_run_dir() -> object:
    """The run folder this process locked for writing, if any (:data:`policygrad.runs.written_run_dir`)."""
    runs = sys.modules.get("policygrad.runs")  # never imported: no folder was written
    return getattr(runs, "written_run_dir", None)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports torch: seconds, in which Ctrl-C deserves a line, not a traceback
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("policygrad: interrupted before a run folder was written", file=sys.stderr)
        return 130
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except PolicygradError as err:
        interrupted = getattr(err, "exit_code", None)  # policygrad.runs.RunInterrupted: checkpointed first
        print(f"policygrad: {'' if interrupted else 'error: '}{err}", file=sys.stderr)
        return interrupted or 1
    except OSError as err:  # a file of the run folder that could not be written (metrics, summary)
        folder = getattr(args, "run_dir", None) or getattr(args, "out", None) or written_run_dir()
        # TensorBoard's writer names its file in bytes
        filename = os.fsdecode(err.filename) if err.filename is not None else None
        if folder is not None:  # the file, the free space, the last intact checkpoint, how to resume
            from policygrad.checkpoint import write_error

            print(f"policygrad: error: {write_error(Path(folder), Path(filename or folder), err)}", file=sys.stderr)
            return 1
        print(f"policygrad: error: {filename or 'a file'}: {err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        folder = getattr(args, "run_dir", None) or getattr(args, "out", None) or written_run_dir()
        if folder is None:  # stopped before any run folder was written: there is nothing to resume
            print("policygrad: interrupted before a run folder was written", file=sys.stderr)
        else:
            print(f"policygrad: interrupted; continue with 'policygrad resume {folder}'", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
