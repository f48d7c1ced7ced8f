"""Run logging: metrics.csv (one row per update), TensorBoard, the progress bar, the curve PNG."""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from policygrad.checkpoint import write_atomic
from policygrad.runs import METRICS_FILE

COLUMNS = [
    "update",
    "env_step",
    "wall_time",
    "episodic_return_mean",
    "episodic_length_mean",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "grad_norm",
    "learning_rate",
    "steps_per_second",
    "eval_return_mean",
    "grad_variance",
    "grad_snr",
]


class MetricsLog:
    """Appends one row per update to ``metrics.csv``, and to TensorBoard at most every ``tensorboard_interval`` s.

    The CSV holds every update; rows reach the file at most ``flush_interval`` seconds after
    they are written, and at every :meth:`flush` — the trainers flush before each checkpoint,
    so every update a checkpoint covers is on disk. TensorBoard gets the latest row every
    ``tensorboard_interval`` seconds (and every row with an evaluation, and the last row):
    updates of A2C come a thousand a second, and a TensorBoard event or a file flush costs
    a noticeable part of an update. On resume, :meth:`truncate` drops rows written after
    the checkpoint being resumed, so the file never holds duplicated or missing updates.
    """

    tensorboard_interval = 0.1
    flush_interval = 0.5
    #: The CSV's columns, in order.
    columns: list[str] = COLUMNS
    #: The column TensorBoard uses as its step, and the TensorBoard tag prefix.
    step_column = "env_step"
    tag_prefix = "train"
    #: Columns that are counters, not curves: left out of TensorBoard.
    counters: tuple[str, ...] = ("update", "env_step")

    def __init__(self, run_dir: Path, tensorboard: bool = True, purge_step: int | None = None) -> None:
        self.path = run_dir / METRICS_FILE
        new = not self.path.exists()
        self.handle = open(self.path, "a", newline="")
        self.writer = csv.writer(self.handle)
        if new:
            self.writer.writerow(self.columns)
            self.handle.flush()
        self._flushed = time.monotonic()
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)
        self._tb_last = float("-inf")
        self._tb_pending: dict[str, Any] | None = None

    @classmethod
    def truncate(cls, run_dir: Path, last_update: int) -> list[dict[str, str]]:
        """Keep only rows with ``update <= last_update`` (atomically); returns them."""
        path = run_dir / METRICS_FILE
        if not path.exists():
            return []
        with open(path, newline="") as handle:
            # A row cut short by a kill lacks its last cells (None): left out even if its update is
            # cut to a smaller number ("4" of "45").
            rows = [
                r
                for r in csv.DictReader(handle)
                if None not in r.values() and r.get("update") and int(r["update"]) <= last_update
            ]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=cls.columns, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(path, buffer.getvalue().encode())
        return rows

    def write(self, row: dict[str, Any]) -> None:
        # csv writes None as an empty cell and a float as its repr; NaN (the one value v != v)
        # becomes an empty cell too.
        self.writer.writerow([v if v == v else None for v in map(row.get, self.columns)])
        now = time.monotonic()
        if now - self._flushed >= self.flush_interval:
            self.flush()
        if self.tb is not None:
            if now - self._tb_last >= self.tensorboard_interval or row.get("eval_return_mean") is not None:
                self._write_tensorboard(row)
                self._tb_last, self._tb_pending = now, None
            else:
                self._tb_pending = row

    def _write_tensorboard(self, row: dict[str, Any]) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [
            Summary.Value(tag=f"{self.tag_prefix}/{key}", simple_value=float(value))
            for key, value in row.items()
            if key not in self.counters
            and isinstance(value, (int, float))
            and not (isinstance(value, float) and math.isnan(value))
        ]
        # One event per row holding every scalar: what add_scalar writes, at a tenth of its cost.
        self.tb._get_file_writer().add_summary(Summary(value=values), int(row[self.step_column]))

    def flush(self) -> None:
        """Put every row written so far into the file."""
        self.handle.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.handle.close()
        if self.tb is not None:
            if self._tb_pending is not None:
                self._write_tensorboard(self._tb_pending)
            self.tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class _StatsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        sps = task.fields.get("sps", 0.0)
        ret = task.fields.get("ret", float("nan"))
        ev = task.fields.get("eval")
        text = f"{int(task.completed):,}/{int(task.total or 0):,} steps  {sps:,.0f} steps/s  return {ret:.1f}"
        if ev is not None:
            text += f"  eval {ev:.1f}"
        return Text(text)


def make_progress(quiet: bool = False) -> Progress:
    """A rich progress bar on stderr: env steps, steps/s, recent return, last eval, ETA."""
    console = Console(file=sys.stderr, quiet=quiet)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _StatsColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        refresh_per_second=4,
    )


def plot_learning_curve(run_dir: Path, title: str) -> Path:
    """Write ``learning_curve.png``: episodic return (and evaluations) against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)

    def series(key: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for r in rows:
            if r.get(key):
                xs.append(float(r["env_step"]))
                ys.append(float(r[key]))
        return xs, ys

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(*series("episodic_return_mean"), label="training episodes (recent mean)", lw=1.2)
    ex, ey = series("eval_return_mean")
    if ex:
        ax.plot(ex, ey, "o-", label="deterministic evaluation", ms=4)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    path = run_dir / "learning_curve.png"
    fig.savefig(path)
    plt.close(fig)
    return path
