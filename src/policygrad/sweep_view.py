"""The live view of a sweep: one rich progress row per run (steps, last evaluation, state)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from policygrad.run_log import read_metrics

_STYLE = {"waiting": "dim", "running": "cyan", "finished": "green", "failed": "bold red"}


class _RunColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        state = task.fields.get("state", "waiting")
        text = f"{int(task.completed):,}/{int(task.total or 0):,}"
        if task.fields.get("eval") is not None:
            text += f" eval {task.fields['eval']:.1f}"
        return Text(f"{text}  {state}", style=_STYLE.get(state, ""))


class SweepView:
    """A context manager drawing every run of ``plan`` on stderr (nothing when ``quiet``)."""

    def __init__(self, plan: dict[str, Any], sweep_dir: Path, quiet: bool) -> None:
        self.plan, self.sweep_dir = plan, sweep_dir
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=16),
            _RunColumn(),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr, quiet=quiet),
            refresh_per_second=4,
        )
        self.tasks: list[Any] = []

    def __enter__(self) -> SweepView:
        from policygrad.trainer import resolve_config

        plan = self.plan
        totals = {  # each setting's budget: --steps, else its preset's or the default
            s["name"]: plan.get("steps") or resolve_config(plan["algo"], plan["env_id"], s["overrides"])[0].total_steps
            for s in plan["settings"]
        }
        width = max(len(run["dir"]) for run in plan["runs"])
        for run in plan["runs"]:
            run_dir = self.sweep_dir / run["dir"]
            total = totals[run["setting"]]
            done, last_eval = 0, None
            for row in read_metrics(run_dir):  # an interrupted run shows where it stands
                done = int(row["env_step"])
                last_eval = float(row["eval_return_mean"]) if row.get("eval_return_mean") else last_eval
            self.tasks.append(self.bars.add_task(f"{run['dir']:<{width}}", total=total, completed=done, eval=last_eval))
        self.bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.bars.stop()

    def started(self, index: int) -> None:
        self.bars.update(self.tasks[index], state="running")

    def advance(self, index: int, env_step: int, last_eval: float | None) -> None:
        fields: dict[str, Any] = {"completed": env_step}
        if last_eval is not None:
            fields["eval"] = last_eval
        self.bars.update(self.tasks[index], **fields)

    def finished(self, index: int) -> None:
        task = self.tasks[index]
        done = self.bars.tasks[task].completed or 1  # a run that reached its target stops early: a full bar
        self.bars.update(task, state="finished", total=done, completed=done)

    def failed(self, index: int) -> None:
        self.bars.update(self.tasks[index], state="failed")


__all__ = ["SweepView"]
