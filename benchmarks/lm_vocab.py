"""Cost of a 32,000-token vocabulary against the 16-token one, and where the time goes.

Pretrains a reference for `sum` at each vocabulary size (the extra 31,984 tokens are
unused filler the reference learns never to write), then times RLOO updates phase by
phase: sampling (KV-cache generation with inverse-CDF draws), the reference's
log-probs, and the update (forward + backward + Adam). Also times one sampling step
by inverse CDF against ``torch.multinomial``, and trains the 32K policy briefly to show
that it learns. One CPU thread.

    python benchmarks/lm_vocab.py [--updates 150] [--out benchmarks/results/lm_vocab.json]

``--compare`` skips pretraining and the training run and times RLOO updates of a freshly
initialised model at each vocabulary along paths of the head, alternating them, side by
side, in wall-clock and in this process's CPU time (the steadier of the two on a loaded
machine): ``reference`` (full logits, autograd through log_softmax: the original path),
``fused`` (full logits, the gradient written out: ``token_scores``), ``chunked``
(``policygrad.lm.head``: blocks of rows, no (N·T, V) tensor) and ``auto`` (the default
choice between them). Each ratio is against the same path's update at the smallest
vocabulary:

    python benchmarks/lm_vocab.py --compare [--updates 10] [--rounds 2] [--vocabs 16,32000]
        [--paths reference,fused,auto]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from policygrad.lm import generation
from policygrad.lm.algorithms import rloo
from policygrad.lm.generation import generate, inverse_cdf_sample, sampling_uniforms, score
from policygrad.lm.head import set_head_path
from policygrad.lm.model import TransformerLM
from policygrad.lm.pretrain import PretrainConfig, pretrain
from policygrad.lm.rollout import build_rollout
from policygrad.lm.tasks import get_task
from policygrad.lm.trainer import train


def phase_times(reference: torch.nn.Module, vocab_size: int, updates: int, warmup: int = 5) -> dict[str, float]:
    """Mean milliseconds per RLOO update in each phase (after ``warmup`` updates), and CPU ms per update."""
    task = get_task("sum", vocab_size)
    cfg = rloo.Config()
    policy = copy.deepcopy(reference)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(0)
    totals = {"sample_ms": 0.0, "reference_ms": 0.0, "update_ms": 0.0}
    cpu_ms = 0.0
    for i in range(updates + warmup):
        prompts = task.prompts(cfg.prompts_per_update, generator).repeat_interleave(cfg.samples_per_prompt, 0)
        groups = torch.arange(cfg.prompts_per_update).repeat_interleave(cfg.samples_per_prompt)
        c0, t0 = time.process_time(), time.perf_counter()
        samples = generate(policy, prompts, task.response_length, sampling_uniforms(generator, len(prompts), 5))
        t1 = time.perf_counter()
        with torch.no_grad():
            ref_log_probs = score(reference, prompts, samples.responses).log_probs
        t2 = time.perf_counter()
        rollout = build_rollout(samples, task.reward(prompts, samples.responses), ref_log_probs, groups, 0.03, True)
        rloo.update(policy, optimizer, rollout, cfg, i)
        t3, c3 = time.perf_counter(), time.process_time()
        if i >= warmup:
            totals["sample_ms"] += (t1 - t0) * 1e3
            totals["reference_ms"] += (t2 - t1) * 1e3
            totals["update_ms"] += (t3 - t2) * 1e3
            cpu_ms += (c3 - c0) * 1e3
    out = {k: v / updates for k, v in totals.items()}
    out["total_ms"] = sum(out.values())
    out["cpu_ms"] = cpu_ms / updates
    return out


def sampler_times(vocab_size: int, batch: int = 128, repeats: int = 50) -> dict[str, float]:
    """Milliseconds for one sampling step of ``batch`` rows: inverse CDF vs torch.multinomial."""
    logits = torch.randn(batch, vocab_size)
    uniforms = torch.rand(batch)
    out = {}
    for name, fn in (
        ("inverse_cdf_ms", lambda: inverse_cdf_sample(logits, uniforms)),
        ("multinomial_ms", lambda: torch.multinomial(torch.softmax(logits, -1), 1)),
    ):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        out[name] = (time.perf_counter() - start) / repeats * 1e3
    return out


@contextlib.contextmanager
def scorer(name: str) -> Iterator[None]:
    """Make ``score``'s default scorer ``name`` for the duration (the timed code is the library's own)."""
    original = generation.SCORERS["fused"]
    generation.SCORERS["fused"] = generation.SCORERS[name]
    try:
        yield
    finally:
        generation.SCORERS["fused"] = original


#: The head's paths: (head_path, score's scorer). ``reference`` is the code before either speed-up;
#: ``auto`` is what a run does by default (the full logits and ``fused`` below 1,024 tokens, else chunked).
PATHS = {
    "reference": ("full", "reference"),
    "fused": ("full", "fused"),
    "chunked": ("chunked", "fused"),
    "auto": ("auto", "fused"),
}


def compare_paths(updates: int, rounds: int, vocabs: list[int], paths: list[str]) -> dict[str, dict[str, float]]:
    """ms per RLOO update (per phase, wall and CPU) along each path, alternating; the best round of each is kept."""
    best: dict[tuple[int, str], dict[str, float]] = {}
    for _ in range(rounds):
        for vocab in vocabs:
            task = get_task("sum", vocab)
            torch.manual_seed(0)
            model = TransformerLM(PretrainConfig(vocab_size=vocab).model_config(task))
            for name in paths:
                head_path, scorer_name = PATHS[name]
                set_head_path(model, head_path)
                with scorer(scorer_name):
                    times = phase_times(model, vocab, updates, warmup=2)
                key = (vocab, name)
                if key not in best or times["total_ms"] < best[key]["total_ms"]:
                    best[key] = times
    small = min(vocabs)
    print(
        f"| vocabulary | path | ms / update | sampling | reference log-probs | update | × the {small}-token update "
        "| CPU ms / update | × (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (vocab, name), t in sorted(best.items()):
        base = best[(small, name)]
        print(
            f"| {vocab:,} | {name} | {t['total_ms']:.1f} | {t['sample_ms']:.1f} | {t['reference_ms']:.1f} "
            f"| {t['update_ms']:.1f} | ×{t['total_ms'] / base['total_ms']:.1f} | {t['cpu_ms']:.1f} "
            f"| ×{t['cpu_ms'] / base['cpu_ms']:.1f} |"
        )
    return {f"{vocab}/{name}": t for (vocab, name), t in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=30, help="timed updates per vocabulary")
    parser.add_argument("--train-updates", type=int, default=300, help="RLOO updates of the 32K training run")
    parser.add_argument("--pretrain-steps", type=int, default=1200, help="pretraining steps of each reference")
    parser.add_argument("--out", help="JSON results (default benchmarks/results/lm_vocab[_compare].json)")
    parser.add_argument("--compare", action="store_true", help="time the head's paths only (no pretraining)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of --compare (best kept)")
    parser.add_argument("--vocabs", default="16,32000", help="vocabulary sizes of --compare, comma-separated")
    parser.add_argument("--paths", default="reference,fused,auto", help=f"paths of --compare: {', '.join(PATHS)}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out = args.out or f"benchmarks/results/lm_vocab{'_compare' if args.compare else ''}.json"
    if args.compare:
        vocabs, paths = [int(v) for v in args.vocabs.split(",")], args.paths.split(",")
        if unknown := set(paths) - PATHS.keys():
            parser.error(f"unknown path {', '.join(sorted(unknown))}; choose from {', '.join(PATHS)}")
        results = compare_paths(args.updates, args.rounds, vocabs, paths)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
        return
    results: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="lm_vocab_"))
    for vocab in (16, 32000):
        ref_dir = work / f"ref-sum-v{vocab}"
        model, stats = pretrain("sum", PretrainConfig(vocab_size=vocab, steps=args.pretrain_steps), ref_dir, quiet=True)
        results[str(vocab)] = {
            "parameters": model.num_parameters(),
            "pretrain_seconds": stats["pretrain_seconds"],
            "reference_reward": stats["reward_mean"],
            **phase_times(model, vocab, args.updates),
            **sampler_times(vocab),
        }
    summary = train(
        "rloo",
        "sum",
        run_dir=work / "rloo-v32000",
        reference=work / "ref-sum-v32000",
        updates=args.train_updates,
        max_train_seconds=None,
        eval_prompts=256,
    )
    results["32000"]["train"] = {
        k: summary[k]
        for k in (
            "updates",
            "train_seconds",
            "final_reward_mean",
            "final_success_rate",
            "kl_mean",
            "reference_reward_mean",
            "tokens_per_second",
        )
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    small, large = results["16"], results["32000"]
    print("| vocabulary | parameters | ms / update | sampling | reference | update | inverse CDF | multinomial |")
    print("|---|---|---|---|---|---|---|---|")
    for vocab, r in (("16", small), ("32,000", large)):
        print(
            f"| {vocab} | {r['parameters']:,} | {r['total_ms']:.1f} | {r['sample_ms']:.1f} | {r['reference_ms']:.1f} "
            f"| {r['update_ms']:.1f} | {r['inverse_cdf_ms']:.2f} | {r['multinomial_ms']:.2f} |"
        )
    t = large["train"]
    print(
        f"\n32K RLOO on sum: reward {t['reference_reward_mean']:.3f} → {t['final_reward_mean']:.3f} "
        f"(success {t['final_success_rate']:.3f}) in {t['updates']} updates, {t['train_seconds']:.0f} s, "
        f"KL {t['kl_mean']:.2f}; cost per update ×{large['total_ms'] / small['total_ms']:.1f} the 16-token one"
    )


if __name__ == "__main__":
    main()
