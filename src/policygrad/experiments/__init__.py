"""Reproducible experiments: each claim of the theory as a figure (PNG), numbers (JSON) and a note (Markdown).

Run one with ``policygrad experiment NAME [--out DIR] [--seed N]`` or::

    from policygrad.experiments import run_experiment
    paths, report = run_experiment("baseline", out="results/baseline", seed=0)

The same seed gives the same numbers (times, in the JSON's ``timing``, are the machine's).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

import torch

from policygrad.errors import PolicygradError, lookup
from policygrad.experiments.common import Report, write_report

#: Experiment name → module (each has ``SUMMARY`` and ``run(seed, quick=False, **options) -> Report``).
EXPERIMENTS: dict[str, str] = {
    "bandit": "policygrad.experiments.bandit",
    "returns": "policygrad.experiments.returns",
    "gradient-scatter": "policygrad.experiments.gradient_scatter",
    "baseline": "policygrad.experiments.baseline",
    "estimators": "policygrad.experiments.estimators",
    "stochastic-optimum": "policygrad.experiments.stochastic_optimum",
    "argmax-instability": "policygrad.experiments.argmax_instability",
    "chain": "policygrad.experiments.chain",
    "large-actions": "policygrad.experiments.large_actions",
    "lm-estimators": "policygrad.experiments.lm_estimators",
}


def get_experiment(name: str) -> Any:
    """The module of experiment ``name``, or a clear error."""
    return importlib.import_module(lookup(name, EXPERIMENTS, "experiment", see="policygrad experiment --list"))


def list_experiments() -> dict[str, str]:
    """Name → one-line summary of every experiment."""
    return {name: get_experiment(name).SUMMARY for name in EXPERIMENTS}


def default_out(name: str, seed: int) -> Path:
    """``runs/experiments/<name>-seed<seed>``."""
    return Path("runs") / "experiments" / f"{name}-seed{seed}"


def run_experiment(
    name: str, out: str | Path | None = None, seed: int = 0, quick: bool = False, **options: Any
) -> tuple[dict[str, Path], Report]:
    """Run experiment ``name`` and write ``NAME.png``, ``NAME.json``, ``NAME.md`` into ``out``.

    ``quick`` shrinks every size for a smoke test (the numbers are then only indicative).
    ``options`` go to the experiment (``actions="CCAB"`` for ``bandit``). Returns the
    written paths and the report.
    """
    module = get_experiment(name)
    if seed < 0:
        raise PolicygradError(f"--seed must be >= 0, got {seed}")
    out_dir = Path(out) if out is not None else default_out(name, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is fastest, and the numbers do not depend on cores
    start = time.perf_counter()
    try:
        report = module.run(seed=seed, quick=quick, out=out_dir, **options)
    finally:
        torch.set_num_threads(threads)
    report.timing["runtime_seconds"] = round(time.perf_counter() - start, 2)
    meta = {"experiment": name, "seed": seed, "quick": quick, "summary": module.SUMMARY}
    return write_report(report, name, out_dir, meta), report


__all__ = ["EXPERIMENTS", "Report", "run_experiment", "list_experiments", "get_experiment", "default_out"]
