"""policygrad's grpo and rloo against TRL's GRPOTrainer and RLOOTrainer, side by side.

Same task (`target` with 16-token responses: reward = fraction of tokens equal to the
prompt's digit), same batch (16 prompts × 4 completions = 64 completions × 16 tokens),
same model size (≈ 133k parameters: a Llama config for TRL, policygrad's transformer
with a wider MLP), the same KL penalty (β = 0.04, so both also run a reference model),
one CPU thread, randomly initialised models. TRL runs offline from a local folder that
this script writes first (a word-level tokenizer over the 16 task tokens and the tiny
Llama). Reported: seconds per update (median after warm-up), updates per second, the
ratio, and set-up time (import + building the trainer).

    pip install 'policygrad[bench]'
    python benchmarks/lm_trl.py [--steps 20] [--out benchmarks/results/lm_trl.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

BATCH_PROMPTS, GROUP, LENGTH, BETA, LR = 16, 4, 16, 0.04, 1e-3


def target_reward(prompts: list[str], completions: list[str], **_: object) -> list[float]:
    """Fraction of the 16 completion tokens equal to the prompt's digit (TRL passes decoded text)."""
    out = []
    for prompt, completion in zip(prompts, completions, strict=True):
        digit = prompt.split()[1]
        out.append(sum(tok == digit for tok in completion.split()[:LENGTH]) / LENGTH)
    return out


class _StepTimer:
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def callback(self):  # a TrainerCallback built lazily (transformers is optional)
        from transformers import TrainerCallback

        timer = self

        class Timer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer._start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.times.append(time.perf_counter() - timer._start)

        return Timer()


def run_trl(kind: str, folder: Path, steps: int) -> dict[str, float]:
    start = time.perf_counter()
    import transformers

    transformers.logging.set_verbosity_error()
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    config_cls, trainer_cls = (GRPOConfig, GRPOTrainer) if kind == "grpo" else (RLOOConfig, RLOOTrainer)
    prompts = [f"<bos> {d % 10} :" for d in range(BATCH_PROMPTS * steps)]
    args = config_cls(
        output_dir=str(folder / f"trl-{kind}"),
        per_device_train_batch_size=BATCH_PROMPTS * GROUP,
        num_generations=GROUP,
        max_completion_length=LENGTH,
        generation_kwargs={"min_new_tokens": LENGTH},
        beta=BETA,
        learning_rate=LR,
        max_steps=steps,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=10**6,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    timer = _StepTimer()
    trainer = trainer_cls(
        model=str(folder / "model"),
        reward_funcs=target_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=AutoTokenizer.from_pretrained(folder / "model"),
        callbacks=[timer.callback()],
    )
    setup = time.perf_counter() - start
    trainer.train()
    warm = timer.times[3:]
    return {"setup_seconds": setup, "seconds_per_update": statistics.median(warm), "updates": len(timer.times)}


def run_policygrad(kind: str, steps: int) -> dict[str, float]:
    start = time.perf_counter()
    from policygrad.lm.algorithms import get_algorithm
    from policygrad.lm.generation import generate, sampling_uniforms, score
    from policygrad.lm.model import ModelConfig, TransformerLM
    from policygrad.lm.rollout import build_rollout
    from policygrad.lm.tasks import TargetTask

    task = TargetTask()
    task.response_length = LENGTH
    module = get_algorithm(kind)
    cfg = module.Config(prompts_per_update=BATCH_PROMPTS, samples_per_prompt=GROUP, kl_coef=BETA, learning_rate=LR)
    torch.manual_seed(0)
    model_cfg = ModelConfig(vocab_size=16, context_length=3 + LENGTH, d_model=64, n_layers=2, n_heads=4, d_ff=384)
    reference = TransformerLM(model_cfg)
    policy = TransformerLM(model_cfg)
    policy.load_state_dict(reference.state_dict())
    reference.requires_grad_(False)
    optimizer = torch.optim.Adam(policy.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(0)
    groups = torch.arange(BATCH_PROMPTS).repeat_interleave(GROUP)
    setup = time.perf_counter() - start
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        prompts = task.prompts(BATCH_PROMPTS, generator).repeat_interleave(GROUP, 0)
        samples = generate(policy, prompts, LENGTH, sampling_uniforms(generator, len(prompts), LENGTH), False)
        with torch.no_grad():
            ref_log_probs = score(reference, prompts, samples.responses).log_probs
        rewards = task.reward(prompts, samples.responses)
        rollout = build_rollout(samples, rewards, ref_log_probs, groups, cfg.kl_coef, cfg.kl_in == "reward")
        module.update(policy, optimizer, rollout, cfg, i)
        times.append(time.perf_counter() - t0)
    return {
        "setup_seconds": setup,
        "seconds_per_update": statistics.median(times[3:]),
        "updates": steps,
        "parameters": sum(p.numel() for p in policy.parameters()),
    }


def _one(trainer: str, kind: str, folder: Path, steps: int) -> dict[str, float]:
    """Run one trainer in a fresh interpreter, so its import time counts in its set-up."""
    import subprocess
    import sys

    command = [sys.executable, __file__, "--one", trainer, kind, "--steps", str(steps), "--folder", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the trainers this many times")
    parser.add_argument("--out", default="benchmarks/results/lm_trl.json")
    parser.add_argument("--one", nargs=2, metavar=("TRAINER", "KIND"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.one:
        trainer, kind = args.one
        start = time.perf_counter()
        result = run_trl(kind, Path(args.folder), args.steps) if trainer == "trl" else run_policygrad(kind, args.steps)
        if trainer == "trl":
            result["parameters"] = json.loads((Path(args.folder) / "parameters.json").read_text())
        result["wall_seconds"] = time.perf_counter() - start
        print(json.dumps(result))
        return
    from policygrad.lm.hf import save_tiny_llama

    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "parameters.json").write_text(json.dumps(save_tiny_llama(folder / "model")))
        for _ in range(args.repeats):  # alternate, so a noisy neighbour hits every trainer alike
            for kind in ("grpo", "rloo"):
                for trainer in ("trl", "policygrad"):
                    name = f"{'TRL' if trainer == 'trl' else 'policygrad'} {kind}"
                    results.setdefault(name, []).append(_one(trainer, kind, folder, args.steps))
    import trl

    best = {name: min(runs, key=lambda r: r["seconds_per_update"]) for name, runs in results.items()}
    setup = {name: min(r["setup_seconds"] for r in runs) for name, runs in results.items()}
    versions = {"trl": trl.__version__, "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"versions": versions, "runs": results}, indent=2))
    print(f"TRL {trl.__version__}, torch {torch.__version__}, 1 thread; 64 completions × 16 tokens, β = {BETA}")
    print(f"(best of {args.repeats} alternating runs, median of {args.steps - 3} timed updates each)\n")
    print("| trainer | parameters | s / update | updates / s | vs TRL | import + set-up s |")
    print("|---|---|---|---|---|---|")
    for kind in ("grpo", "rloo"):
        trl_speed = 1.0 / best[f"TRL {kind}"]["seconds_per_update"]
        for name in (f"TRL {kind}", f"policygrad {kind}"):
            r = best[name]
            speed = 1.0 / r["seconds_per_update"]
            print(
                f"| {name} | {r['parameters']:,} | {r['seconds_per_update']:.3f} | {speed:.1f} "
                f"| ×{speed / trl_speed:.1f} | {setup[name]:.1f} |"
            )


if __name__ == "__main__":
    main()
