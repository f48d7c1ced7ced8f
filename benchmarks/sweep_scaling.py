"""What does ``policygrad sweep`` cost and gain? Throughput with 1 and 2 workers, overhead per run.

    python benchmarks/sweep_scaling.py            # writes benchmarks/results/sweep_scaling.{md,json}
    python benchmarks/sweep_scaling.py --ray      # also the same sweep with --backend ray

The same short A2C CartPole-v1 runs (the preset, seeds 0-3, ``--steps`` env steps each) are
trained four ways, every way a fresh command as a user types it:

- *bare*: ``policygrad train`` once per seed, one after the other — the reference;
- ``policygrad sweep --workers 1`` and ``--workers 2`` (local worker processes);
- with ``--ray``: ``policygrad sweep --backend ray --workers 2`` (a private local Ray).

Each run is deterministic, so every way does exactly the same env steps and updates; only the
wall time differs. The ways take turns, round after round (rotating which goes first), so they
share the machine's background load; the medians over rounds are reported, with the machine's
load average. *Ceiling*: the speedup two processes burning CPU got over one in the same round
— 2.0 on an idle 2-core machine, less when other work holds a core; no 2-worker speedup can
beat it. *Overhead per run*: (sweep wall time − the bare runs' wall time) / runs, both with one
run at a time in its own process; negative when the sweep's fork server (the trainer imported
once, each run forked from it) saves more than planning and the progress view cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from slow_env import burn_cpu  # benchmarks/slow_env.py, beside this script

RESULTS = Path(__file__).parent / "results"
SEEDS = [0, 1, 2, 3]
COMMAND = "python benchmarks/sweep_scaling.py"


def policygrad(*args: str) -> float:
    """Run ``policygrad ARGS`` as a fresh process; its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "policygrad.cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bare(root: Path, steps: int) -> float:
    train = ["train", "a2c", "CartPole-v1", "--steps", str(steps), "--quiet"]
    return sum(policygrad(*train, "--seed", str(s), "--out", str(root / f"seed{s}")) for s in SEEDS)


def swept(root: Path, steps: int, workers: int, backend: str = "local") -> float:
    seeds = ",".join(map(str, SEEDS))
    args = ["a2c", "CartPole-v1", "--seeds", seeds, "--steps", str(steps), "--workers", str(workers)]
    return policygrad("sweep", *args, "--backend", backend, "--quiet", "--out", str(root))


def ceiling(seconds: float = 1.0) -> float:
    """(one process burning ``seconds`` of CPU) / (two processes burning ``seconds / 2`` each, at once)."""
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(burn_cpu, [0.01, 0.01]))  # started before timing
        start = time.perf_counter()
        burn_cpu(seconds)
        alone = time.perf_counter() - start
        start = time.perf_counter()
        list(pool.map(burn_cpu, [seconds / 2, seconds / 2]))
        return alone / (time.perf_counter() - start)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def summaries(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("summary.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per run (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every way (default 3)")
    parser.add_argument("--ray", action="store_true", help="also time --backend ray (needs policygrad[ray])")
    parser.add_argument("--out", type=Path, default=RESULTS / "sweep_scaling")
    args = parser.parse_args()
    ways = {
        "bare": lambda root: bare(root, args.steps),
        "sweep, 1 worker": lambda root: swept(root, args.steps, 1),
        "sweep, 2 workers": lambda root: swept(root, args.steps, 2),
    }
    if args.ray:
        ways["sweep --backend ray, 2 workers"] = lambda root: swept(root, args.steps, 2, "ray")
    results: dict[str, Any] = {
        "command": COMMAND
        + (" --ray" if args.ray else "")
        + (f" --steps {args.steps}" if args.steps != 20_000 else ""),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "steps": args.steps,
        "seeds": SEEDS,
        "load_average_before": os.getloadavg(),
        "rounds": [],
    }
    names = list(ways)
    work: dict[str, Any] = {}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        row: dict[str, float] = {"ceiling": ceiling()}
        for name in order:
            root = Path(tempfile.mkdtemp(prefix="sweep-scaling-"))
            try:
                row[name] = ways[name](root)
                done = summaries(root)
                work[name] = sorted((s["seed"], s["env_steps"], s["updates"]) for s in done)
                row[name + " train_seconds"] = sum(s["train_seconds"] for s in done)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            print(f"round {r + 1}: {name}: {row[name]:.1f} s", flush=True)
        results["rounds"].append(row)
    if len({json.dumps(w) for w in work.values()}) != 1:
        raise SystemExit(f"the ways did different work: {work}")
    results["env_steps"] = sum(steps for _, steps, _ in work["bare"])
    results["load_average_after"] = os.getloadavg()
    results["ways"] = {
        name: {
            "wall_s": statistics.median(row[name] for row in results["rounds"]),
            "train_s": statistics.median(row[name + " train_seconds"] for row in results["rounds"]),
        }
        for name in names
    }
    results["ceiling"] = statistics.median(row["ceiling"] for row in results["rounds"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict[str, Any]) -> str:
    runs, ways = len(r["seeds"]), r["ways"]
    one, bare_wall = ways["sweep, 1 worker"]["wall_s"], ways["bare"]["wall_s"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC by `{r['command']}` on {r['cpus']} shared CPU "
        f"cores ({r['cpu']}), load average {r['load_average_before'][0]:.1f} before and "
        f"{r['load_average_after'][0]:.1f} after: other work shared the machine, so the times are noisy; "
        f"medians of {len(r['rounds'])} alternating rounds. {runs} A2C CartPole-v1 runs (preset, seeds "
        f"{r['seeds'][0]}-{r['seeds'][-1]}, --steps {r['steps']}): {r['env_steps']:,} env steps in all, the same "
        "in every row.",
        "",
        "| way | wall s | runs / min | env steps / s | speedup over 1 worker | ceiling | training s (in the runs) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, way in ways.items():
        limit = f"{r['ceiling']:.2f}x" if "2 workers" in name else ""
        speedup = f"{one / way['wall_s']:.2f}x" if name != "bare" else ""
        lines.append(
            f"| {name} | {way['wall_s']:.1f} | {60 * runs / way['wall_s']:.1f} | {r['env_steps'] / way['wall_s']:,.0f} "
            f"| {speedup} | {limit} | {way['train_s']:.1f} |"
        )
    lines += [
        "",
        f"Overhead per run of the sweep against bare `policygrad train` (one run at a time each): "
        f"({one:.1f} − {bare_wall:.1f}) / {runs} = {(one - bare_wall) / runs:+.2f} s. A bare run spends "
        f"{(bare_wall - ways['bare']['train_s']) / runs:.1f} s outside training (starting Python, importing "
        "torch, building and evaluating).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
