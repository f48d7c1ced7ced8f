"""The training process behind the Evolution page's live curve: ``python -m policygrad.lab.worker``.

It imports torch and the trainer first and prints ``{"ready": true}``, then reads one job
as a JSON line on stdin (``{"algo": …, "steps": …, "seed": …, "run_dir": …}``; end of input:
exit), so a spare worker can be started before anyone asks for training. It trains the
algorithm on CartPole-v1 with the library's :class:`~policygrad.trainer.Trainer` and prints
one JSON line per update (``{"row": {...}}``), then ``{"finished": reason}`` or
``{"error": message}``. It runs in its own process so the web page never waits on it; it
stops at the next update once the file ``STOP`` appears in its run folder, or once the lab
that started it has gone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from policygrad.errors import PolicygradError

ENV_ID = "CartPole-v1"
STOP_FILE = "STOP"
#: The row fields the page draws.
FIELDS = ("update", "env_step", "wall_time", "episodic_return_mean", "episodic_length_mean", "steps_per_second")


def _say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def train(algo: str, total_steps: int, seed: int, run_dir: Path, parent_pid: int) -> str:
    """Train ``algo`` for ``total_steps`` env steps, printing each update's row; returns the stop reason."""
    import torch

    from policygrad.trainer import Trainer, resolve_config

    torch.set_num_threads(1)
    overrides = {"total_steps": total_steps, "seed": seed, "eval_every": 0, "eval_episodes": 3, "target_return": None}
    cfg, preset_used = resolve_config(algo, ENV_ID, overrides)
    trainer = Trainer.new(algo, cfg, run_dir / "run", preset_used, quiet=True)
    stop_path = run_dir / STOP_FILE

    def on_update(row: dict[str, Any]) -> bool:
        _say({"row": {key: row.get(key) for key in FIELDS}})
        return stop_path.exists() or os.getppid() != parent_pid  # asked to stop, or the lab is gone

    try:
        _, history = trainer.run(on_update=on_update)
    finally:
        shutil.rmtree(run_dir / "run", ignore_errors=True)  # a demonstration run: nothing to keep
    return "budget" if history and history[-1]["env_step"] >= total_steps else "stopped"


def _warm_up() -> None:
    """The slow first steps of a run (torch, gymnasium, TensorBoard, matplotlib) before the job arrives."""
    import gymnasium
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401 - the learning-curve figure at the end of a run
    import torch.utils.tensorboard  # noqa: F401 - the run's TensorBoard log

    import policygrad.trainer  # noqa: F401

    gymnasium.make(ENV_ID).close()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first construction imports torch._dynamo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policygrad.lab.worker")
    parser.add_argument("--parent-pid", type=int, default=os.getppid(), help="stop when this process is gone")
    args = parser.parse_args(argv)
    _warm_up()
    _say({"ready": True})
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    try:
        job = json.loads(line)
        reason = train(str(job["algo"]), int(job["steps"]), int(job["seed"]), Path(job["run_dir"]), args.parent_pid)
    except PolicygradError as err:
        _say({"error": str(err)})
        return 1
    except Exception as err:  # noqa: BLE001 - reported on the page as one line
        _say({"error": f"{type(err).__name__}: {err}"})
        return 1
    _say({"finished": reason})
    return 0


if __name__ == "__main__":
    sys.exit(main())
