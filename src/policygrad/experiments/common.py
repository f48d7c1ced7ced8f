"""What every experiment returns, and writing it: ``NAME.png``, ``NAME.json``, ``NAME.md``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from policygrad.palette import CHAIN_COLORS

#: One colour per step of the chain (and for with/without comparisons), used by every figure.
COLORS = {**CHAIN_COLORS, "exact": "black"}


@dataclass
class Report:
    """An experiment's result: the figure, the numbers (JSON-ready) and a short Markdown explanation.

    ``numbers`` must be deterministic for a seed; machine-dependent measurements (times)
    go in ``timing``.
    """

    figure: Figure
    numbers: dict[str, Any]
    markdown: str
    timing: dict[str, Any] = field(default_factory=dict)


def figure(rows: int, cols: int, width: float = 5.0, height: float = 3.8) -> tuple[Figure, np.ndarray]:
    """A Figure with a (rows, cols) grid of axes, drawn without a GUI backend."""
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).reshape(rows, cols)
    return fig, axes


def jsonable(value: Any) -> Any:
    """Numbers, arrays and tensors as plain JSON: NaN → null, ±inf → the strings "inf"/"-inf"."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return jsonable(value.tolist())
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


def write_report(report: Report, name: str, out: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``NAME.png``, ``NAME.json`` (meta + numbers + timing) and ``NAME.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": out / f"{name}.png", "json": out / f"{name}.json", "md": out / f"{name}.md"}
    report.figure.savefig(paths["png"], dpi=110)
    payload = {**meta, "numbers": report.numbers, "timing": report.timing}
    paths["json"].write_text(json.dumps(jsonable(payload), indent=2, ensure_ascii=False) + "\n")
    paths["md"].write_text(report.markdown.strip() + f"\n\n![{name}]({name}.png)\n")
    return paths


def running_mean(x: np.ndarray) -> np.ndarray:
    """Cumulative mean along the first axis."""
    x = np.asarray(x, dtype=np.float64)
    counts = np.arange(1, x.shape[0] + 1).reshape(-1, *([1] * (x.ndim - 1)))
    return np.cumsum(x, axis=0) / counts


def fmt(x: float, digits: int = 3) -> str:
    """A number for Markdown: ±inf spelled out, otherwise ``digits`` significant figures."""
    if math.isinf(x):
        return "−∞" if x < 0 else "∞"
    return f"{x:.{digits}g}"
