"""metrics.csv and TensorBoard for token training: one row per update, a fixed column list."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from policygrad.checkpoint import write_atomic

COLUMNS = [
    "update",
    "tokens",
    "wall_time",
    "reward_mean",
    "success_rate",
    "kl_k1",
    "kl_k3",
    "entropy",
    "response_length_mean",
    "policy_loss",
    "kl_loss",
    "value_loss",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "grad_norm",
    "learning_rate",
    "tokens_per_second",
]


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


class LMMetricsLog:
    """Appends one row per update to ``metrics.csv`` and to TensorBoard (step = update).

    :meth:`truncate` drops rows written after the checkpoint being resumed.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True, purge_step: int | None = None) -> None:
        self.path = run_dir / "metrics.csv"
        new = not self.path.exists()
        self.handle = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            self.writer.writeheader()
            self.handle.flush()
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow to import: only when logging

            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)

    @staticmethod
    def truncate(run_dir: Path, last_update: int) -> list[dict[str, str]]:
        """Keep only rows with ``update <= last_update`` (atomically); returns them."""
        path = run_dir / "metrics.csv"
        if not path.exists():
            return []
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("update") and int(r["update"]) <= last_update]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(path, buffer.getvalue().encode())
        return rows

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: _format(row.get(k)) for k in COLUMNS})
        self.handle.flush()
        if self.tb is not None:
            for key in COLUMNS[2:]:
                value = row.get(key)
                if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
                    self.tb.add_scalar(f"lm/{key}", value, int(row["update"]))

    def close(self) -> None:
        self.handle.close()
        if self.tb is not None:
            self.tb.close()


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
