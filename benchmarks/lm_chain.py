"""The four token algorithms with their defaults: the results table of docs/lm.md and the README.

Pretrains one reference per task (timed), then runs ``policygrad lm train`` for rloo,
grpo and ppo on `sum` and reinforce on `target`, each with its default settings, and
reports reward, success (exact-sum accuracy on `sum`), KL to the reference (k1 and k3)
on 512 fresh prompts, the mean KL of the second and last quarter of training, training
seconds and tokens per second.

    python benchmarks/lm_chain.py [--seed 0] [--out benchmarks/results/lm_chain.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from policygrad.lm.pretrain import PretrainConfig, pretrain
from policygrad.lm.trainer import train

RUNS = [("rloo", "sum"), ("grpo", "sum"), ("ppo", "sum"), ("reinforce", "target")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/lm_chain.json")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        references = {}
        for task in ("sum", "target"):
            references[task] = Path(tmp) / f"ref-{task}"
            _, stats = pretrain(task, PretrainConfig(seed=args.seed), references[task], quiet=True)
            results[f"pretrain {task}"] = stats
            print(
                f"pretrained {task}: {stats['pretrain_seconds']:.1f} s, reward {stats['reward_mean']:.3f}", flush=True
            )
        for algo, task in RUNS:
            summary = train(
                algo, task, run_dir=Path(tmp) / f"{algo}-{task}", reference=references[task], seed=args.seed
            )
            results[f"{algo} {task}"] = summary
            keys = ("final_reward_mean", "final_success_rate", "kl_mean", "train_seconds")
            print(f"{algo} {task}: {json.dumps({k: summary[k] for k in keys})}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(
        "\n| algorithm | task | reward (ref → final) | success (ref → final) | KL k1 / k3 | KL 2nd → last quarter "
        "| updates | train s | tokens/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for algo, task in RUNS:
        s = results[f"{algo} {task}"]
        print(
            f"| {algo} | {task} | {s['reference_reward_mean']:.2f} → {s['final_reward_mean']:.2f} "
            f"| {s['reference_success_rate']:.2f} → {s['final_success_rate']:.2f} | {s['kl_mean']:.2f} / "
            f"{s['kl_k3_mean']:.2f} | {s['kl_second_quarter_mean']:.2f} → {s['kl_last_quarter_mean']:.2f} "
            f"| {s['updates']} | {s['train_seconds']:.0f} | {s['tokens_per_second']:,.0f} |"
        )


if __name__ == "__main__":
    main()
