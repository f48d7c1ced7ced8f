"""When do Ray rollout workers pay? Start-up cost, per-update overhead, slow-env speedup, broadcast cost.

    python benchmarks/ray_rollouts.py            # writes benchmarks/results/ray_rollouts.{md,json}
    python benchmarks/ray_rollouts.py --quick    # fewer repetitions

Everything runs on this machine with a private Ray instance started the way
``policygrad train --backend ray`` starts it. Measured:

1. ``ray.init`` wall time and the resident memory of Ray's processes;
2. an actor round trip, and the time one rollout update takes on CartPole-v1 (8 envs x 5
   steps, the A2C layout of SB3's zoo) in-process vs on 1 and 2 workers — the per-update overhead;
3. collection throughput on a slow CartPole (``benchmarks/slow_env.py``, ~1 ms
   of CPU per step) in-process vs on 1 and 2 workers, for short and long rollouts;
4. the weight broadcast per update (``ray.put`` + every worker loading the weights) against
   model size, 1M to 50M parameters — the regime of language-model policies.

Timings on a shared machine are noisy: each number is a median of repetitions, and the
machine's load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from slow_env import burn_cpu, register_slow_cartpole  # benchmarks/slow_env.py, beside this script

from policygrad.agent import Agent, AgentSpec
from policygrad.distributed.ray_backend import RayCollector
from policygrad.distributed.ray_workers import connect, import_ray, to_arrays, to_tensors
from policygrad.envs import make_envs
from policygrad.rollout import RolloutCollector
from policygrad.trainer import resolve_config

RESULTS = Path(__file__).parent / "results"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(root: int) -> list[int]:
    """Process ids below ``root`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def median_ms(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def make_agent(env_id: str, cfg: Any) -> Agent:
    _, info = make_envs(env_id, 1)
    torch.manual_seed(0)
    return Agent(AgentSpec(info.obs_dim, info.discrete, info.action_dim, cfg.hidden_sizes, cfg.activation, critic=True))


def make_collectors(env_id: str, num_envs: int = 8) -> dict[str, Any]:
    """In-process, 1-worker and 2-worker collectors over the same envs, all alive at once."""
    out: dict[str, Any] = {}
    for label, overrides in (
        ("local", {}),
        ("ray1", {"backend": "ray", "workers": 1, "worker_cpus": 1.0}),
        ("ray2", {"backend": "ray", "workers": 2, "worker_cpus": 0.5}),  # 1 + 2 x 0.5 = the 2 CPUs Ray sees
    ):
        cfg, _ = resolve_config("a2c", env_id, dict(overrides, num_envs=num_envs))
        agent = make_agent(env_id, cfg)
        if label == "local":
            out[label] = RolloutCollector(make_envs(env_id, num_envs)[0], agent, cfg.seed)
        else:
            out[label] = RayCollector(agent, cfg)
        out[label].reset([cfg.seed + i for i in range(num_envs)])
    return out


def interleaved_ms(collectors: dict[str, Any], steps: int, rounds: int) -> dict[str, Any]:
    """Median ms per ``collect(steps)`` of each collector, measured in turns (ABCABC...).

    Taking turns exposes every collector to the same background load; ``speedup2`` is the
    median over rounds of the in-process time divided by the 2-worker time of that round.
    """
    times: dict[str, list[float]] = {label: [] for label in collectors}
    updates = dict.fromkeys(collectors, 0)
    for label, collector in collectors.items():  # warm-up
        collector.collect(steps, updates[label])
        updates[label] += 1
    cpu_share = []
    for round_ in range(rounds):
        labels = list(collectors)
        labels = labels[round_ % len(labels) :] + labels[: round_ % len(labels)]
        for label in labels:
            start, cpu = time.perf_counter(), time.thread_time()
            collectors[label].collect(steps, updates[label])
            elapsed = time.perf_counter() - start
            updates[label] += 1
            times[label].append(elapsed)
            if label == "local":
                cpu_share.append((time.thread_time() - cpu) / elapsed)
    out: dict[str, Any] = {label: 1e3 * statistics.median(t) for label, t in times.items()}
    ratios = [a / b for a, b in zip(times["local"], times["ray2"], strict=True)]
    out["speedup2"] = statistics.median(ratios)
    out["local_cpu_share"] = statistics.median(cpu_share)
    return out


class Receiver:
    """A worker holding a model of the given shapes; ``load`` copies broadcast weights into it."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        torch.set_num_threads(1)
        self.params = {name: torch.empty(shape) for name, shape in shapes.items()}

    def load(self, weights: dict[str, Any]) -> None:
        tensors = to_tensors(weights) if isinstance(next(iter(weights.values())), np.ndarray) else weights
        for name, tensor in tensors.items():
            self.params[name].copy_(tensor)

    def ping(self) -> None:
        return None


class Burner:
    """A worker that only burns CPU: measures how much parallelism the machine offers right now."""

    def burn(self, seconds: float) -> None:
        burn_cpu(seconds)


def parallel_ceiling(ray: Any, rounds: int, seconds: float = 0.2) -> float:
    """Median over rounds of (one process burning ``seconds`` of CPU) / (two workers burning half each).

    2.0 on an idle 2-core machine; less when other processes hold a core. No rollout
    speedup with 2 workers can exceed it.
    """
    burners = [ray.remote(Burner).options(num_cpus=0).remote() for _ in range(2)]  # CPUs are reserved by the collectors
    ray.get([b.burn.remote(0.01) for b in burners])
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        burn_cpu(seconds)
        alone = time.perf_counter() - start
        start = time.perf_counter()
        ray.get([b.burn.remote(seconds / 2) for b in burners])
        ratios.append(alone / (time.perf_counter() - start))
    for b in burners:
        ray.kill(b)
    return statistics.median(ratios)


def broadcast_ms(ray: Any, params: int, workers: int, repeats: int, as_numpy: bool) -> tuple[float, float]:
    """(put ms, put + every worker loading ms) for a model of ``params`` float32 parameters."""
    rows = params // 1024
    weights = {f"layer{i}": torch.randn(min(rows, 1024), 1024) for i in range(max(1, rows // 1024))}
    shapes = {name: tuple(t.shape) for name, t in weights.items()}
    actor = ray.remote(Receiver).options(num_cpus=0.5)
    receivers = [actor.remote(shapes) for _ in range(workers)]
    ray.get([r.ping.remote() for r in receivers])
    payload = (lambda: to_arrays(weights)) if as_numpy else (lambda: weights)
    try:
        put = median_ms(lambda: ray.put(payload()), repeats)

        def broadcast() -> None:
            ref = ray.put(payload())
            ray.get([r.load.remote(ref) for r in receivers])

        broadcast()  # warm-up
        return put, median_ms(broadcast, repeats)
    finally:
        for r in receivers:
            ray.kill(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", type=Path, default=RESULTS / "ray_rollouts")
    args = parser.parse_args()
    reps = 5 if args.quick else 15
    torch.set_num_threads(1)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_average_before": os.getloadavg()}

    # 1. Start-up: what `policygrad train --backend ray` pays once.
    ray = import_ray(private=True)
    driver_before = rss_mb(os.getpid())
    start = time.perf_counter()
    connect(ray, None)
    results["ray_init_s"] = time.perf_counter() - start
    time.sleep(2.0)  # let Ray's helper processes finish starting
    results["ray_processes_rss_mb"] = sum(rss_mb(p) for p in descendants(os.getpid()))
    results["driver_rss_increase_mb"] = rss_mb(os.getpid()) - driver_before
    print(f"ray.init {results['ray_init_s']:.1f} s, Ray processes {results['ray_processes_rss_mb']:.0f} MB", flush=True)

    # 2. Overheads on CartPole (microseconds per step: Ray cannot pay here).
    pinger = ray.remote(Receiver).options(num_cpus=0.5).remote({"w": (1,)})
    ray.get(pinger.ping.remote())
    results["actor_round_trip_ms"] = median_ms(lambda: ray.get(pinger.ping.remote()), 200)
    ray.kill(pinger)
    collectors = make_collectors("CartPole-v1")
    results["cartpole_update_ms"] = interleaved_ms(collectors, 5, reps * 4)
    for collector in collectors.values():
        getattr(collector, "close", lambda: None)()
    print(f"CartPole 8x5 collect: {results['cartpole_update_ms']}", flush=True)

    # 3. A slow environment (~1 ms CPU per step): where Ray pays.
    collectors = make_collectors(register_slow_cartpole(0.001))
    throughput = []
    for steps, rounds in ((5, reps * 2), (32, reps), (128, max(3, reps // 2))):
        ceiling_before = parallel_ceiling(ray, 5)
        ms = interleaved_ms(collectors, steps, rounds)
        ceiling = (ceiling_before + parallel_ceiling(ray, 5)) / 2
        row = {"steps": steps, **{k: 8 * steps / (ms[k] / 1e3) for k in ("local", "ray1", "ray2")}}
        row.update(speedup2=ms["speedup2"], local_cpu_share=ms["local_cpu_share"], ceiling=ceiling)
        throughput.append(row)
        print(f"slow env 8x{steps}: {row}", flush=True)
    for collector in collectors.values():
        getattr(collector, "close", lambda: None)()
    results["slow_env_steps_per_s"] = throughput

    # 4. Weight broadcast vs model size (2 workers).
    broadcast = []
    for params in (1_048_576, 5_242_880, 10_485_760, 52_428_800):
        put, total = broadcast_ms(ray, params, 2, max(3, reps // 3), as_numpy=True)
        _, total_torch = broadcast_ms(ray, params, 2, 3, as_numpy=False)
        broadcast.append(
            {
                "params": params,
                "mb": params * 4 / 2**20,
                "put_ms": put,
                "broadcast_ms": total,
                "broadcast_torch_ms": total_torch,
            }
        )
        print(f"broadcast {params / 1e6:.0f}M params: {broadcast[-1]}", flush=True)
    results["broadcast"] = broadcast
    results["load_average_after"] = os.getloadavg()
    ray.shutdown()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict[str, Any]) -> str:
    o = r["cartpole_update_ms"]
    lines = [
        f"Measured by `python benchmarks/ray_rollouts.py` on {r['cpus']} shared CPU cores "
        f"(load average {r['load_average_before'][0]:.1f} before, {r['load_average_after'][0]:.1f} after: noisy).",
        "",
        f"- `ray.init` (private local instance): {r['ray_init_s']:.1f} s; Ray's processes "
        f"{r['ray_processes_rss_mb']:.0f} MB resident, the learner +{r['driver_rss_increase_mb']:.0f} MB",
        f"- actor round trip: {r['actor_round_trip_ms']:.2f} ms",
        f"- one CartPole collection (8 envs x 5 steps): {o['local']:.1f} ms in-process, {o['ray1']:.1f} ms on "
        f"1 worker, {o['ray2']:.1f} ms on 2 workers (overhead {o['ray2'] - o['local']:.1f} ms per update: "
        "CartPole gains nothing)",
        "",
        "Collection throughput on the slow CartPole (~1 ms CPU per step), 8 envs, env steps/s (medians; the",
        "collectors take turns so they share the same background load). *Ceiling*: the speedup two processes",
        "burning CPU got over one at the same time — 2.0 on an idle 2-core machine, less when other work holds",
        "a core; no 2-worker speedup can beat it.",
        "",
        "| steps per update | in-process | Ray, 1 worker | Ray, 2 workers | speedup, 2 workers | ceiling |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["slow_env_steps_per_s"]:
        lines.append(
            f"| 8 x {row['steps']} | {row['local']:.0f} | {row['ray1']:.0f} | {row['ray2']:.0f} "
            f"| {row['speedup2']:.2f}x | {row['ceiling']:.2f}x |"
        )
    lines += [
        "",
        "Weight broadcast per update (`ray.put` + 2 workers loading the weights), by model size:",
        "",
        "| parameters | MB (float32) | ray.put | broadcast, numpy arrays (used) | broadcast, torch tensors |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in r["broadcast"]:
        lines.append(
            f"| {row['params'] / 1e6:.0f}M | {row['mb']:.0f} | {row['put_ms']:.1f} ms | {row['broadcast_ms']:.1f} ms "
            f"| {row['broadcast_torch_ms']:.1f} ms |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
