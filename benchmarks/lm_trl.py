"""policygrad's grpo and rloo against TRL's GRPOTrainer and RLOOTrainer, side by side.

Two comparisons. **Same model** (``--compare same``): policygrad's grpo (through its
Hugging Face adapter, the ``policygrad lm train grpo sum --ref FOLDER`` trainer) and
TRL's GRPOTrainer train one and the same Hugging Face Llama folder — a tiny Llama that
``policygrad lm pretrain sum --hf-config llama`` pretrained on the ``sum`` task — with
the same batch (16 prompts × 4 completions of up to 5 tokens), the same loss (TRL's
``loss_type=dapo``, ε = 0.2, group-scaled advantages, k3 KL in the loss with β = 0.04,
one gradient step per batch), the same optimiser (Adam, constant learning rate 1e-3,
gradient norm 1), float32 and one thread, for the same number of updates K. Reported:
seconds per update, the ratio, and the reward of each trained model after K updates,
measured by one function (512 fixed prompts), plus each run's training-reward curve.
Differences that remain: policygrad never samples ``<pad>``/``<bos>`` (its policy is
renormalised over the task's tokens, see docs/lm.md), and the two draw different random
numbers. **Same size** (``--compare size``, the older table): policygrad's own transformer
against TRL on a tiny Llama of similar size.

Same size: same task (`target` with 16-token responses: reward = fraction of tokens equal to the
prompt's digit), same batch (16 prompts × 4 completions = 64 completions × 16 tokens),
same model size (≈ 133k parameters: a Llama config for TRL, policygrad's transformer
with a wider MLP), the same KL penalty (β = 0.04, so both also run a reference model),
one CPU thread, randomly initialised models. TRL runs offline from a local folder that
this script writes first (a word-level tokenizer over the 16 task tokens and the tiny
Llama). Reported: seconds per update (median after warm-up), updates per second, the
ratio, and set-up time (import + building the trainer).

    pip install 'policygrad[bench]'
    python benchmarks/lm_trl.py [--compare same|size|both] [--updates 40] [--steps 20]
        [--out benchmarks/results/lm_trl.json]
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
#: Pretraining steps of the same-model comparison's Llama (reward ≈ 0.55 of the corpus's ≈ 0.68)
SAME_MODEL_PRETRAIN_STEPS = 600
#: Prompts in the fixed evaluation set both trained models are measured on
EVAL_PROMPTS = 512


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
        bf16=False,  # TRL's default on; policygrad computes in float32
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


def pretrain_sum_llama(folder: Path) -> float:
    """The same-model comparison's model: a Hugging Face Llama pretrained on ``sum`` by policygrad.

    Saved to ``folder/llama-sum``; returns its reward on the evaluation prompts (before RL).
    """
    from policygrad.lm.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(architecture="llama", d_ff=256, steps=SAME_MODEL_PRETRAIN_STEPS, eval_prompts=EVAL_PROMPTS)
    model, _ = pretrain("sum", cfg, folder / "llama-sum", quiet=True)
    return evaluate_hf(model.model)


def evaluate_hf(model: torch.nn.Module) -> float:
    """Mean ``sum`` reward of a Hugging Face causal LM on the fixed evaluation prompts (sampled, T = 1)."""
    from types import SimpleNamespace

    from policygrad.lm.hf import HFPolicy
    from policygrad.lm.pretrain import evaluate_model
    from policygrad.lm.tasks import BASE_TOKENS, get_task
    from policygrad.seeding import Stream

    policy = HFPolicy(model, torch.arange(len(BASE_TOKENS)))  # the model's vocabulary is the task's
    stats = evaluate_model(
        policy, get_task("sum"), SimpleNamespace(seed=0, eval_prompts=EVAL_PROMPTS), Stream.LM_EVALUATION
    )
    return stats["reward_mean"]


def run_trl_same_model(model_dir: Path, updates: int) -> dict[str, object]:
    """TRL's GRPOTrainer on the pretrained Llama folder, at policygrad's settings (see the module docstring)."""
    start = time.perf_counter()
    import transformers

    transformers.logging.set_verbosity_error()
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from policygrad.lm.tasks import BASE_TOKENS, PAD, get_task

    task = get_task("sum")
    generator = torch.Generator().manual_seed(0)
    prompts = [task.vocab.decode(p) for p in task.prompts(BATCH_PROMPTS * updates, generator)]
    curve: list[float] = []

    def sum_reward(prompts: list[str], completion_ids: list[list[int]], **_: object) -> list[float]:
        """The task's own reward on the completion's token ids (the tokenizer's ids are the task's)."""
        prompt_ids = torch.tensor([[BASE_TOKENS.index(t) for t in p.split()] for p in prompts])
        responses = torch.full((len(completion_ids), task.response_length), PAD)
        for row, ids in enumerate(completion_ids):
            responses[row, : len(ids)] = torch.tensor(ids[: task.response_length])
        rewards = task.reward(prompt_ids, responses)
        curve.append(rewards.mean().item())
        return rewards.tolist()

    args = GRPOConfig(
        output_dir=str(model_dir.parent / "trl-same"),
        per_device_train_batch_size=BATCH_PROMPTS * GROUP,
        num_generations=GROUP,
        max_completion_length=task.response_length,
        beta=BETA,
        loss_type="dapo",
        scale_rewards="group",
        epsilon=0.2,
        learning_rate=LR,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        weight_decay=0.0,
        max_grad_norm=1.0,
        bf16=False,
        max_steps=updates,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=10**6,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    timer = _StepTimer()
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=sum_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[timer.callback()],
    )
    setup = time.perf_counter() - start
    trainer.train()
    return {
        "setup_seconds": setup,
        "seconds_per_update": statistics.median(timer.times[3:]),
        "updates": len(timer.times),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "reward_curve": curve,
        "final_eval_reward": evaluate_hf(trainer.model),
    }


def run_policygrad_same_model(model_dir: Path, updates: int) -> dict[str, object]:
    """``policygrad lm train grpo sum --ref model_dir`` (the trainer itself) at TRL's settings."""
    start = time.perf_counter()
    from policygrad.lm.algorithms import get_algorithm
    from policygrad.lm.trainer import LMTrainer

    cfg = get_algorithm("grpo").Config(
        task="sum",
        updates=updates,
        prompts_per_update=BATCH_PROMPTS,
        samples_per_prompt=GROUP,
        kl_coef=BETA,
        kl_in="loss",
        kl_estimator="k3",
        loss_type="dapo",
        scale_rewards="group",
        clip_coef=0.2,
        learning_rate=LR,
        anneal_lr=False,
        max_grad_norm=1.0,
        max_train_seconds=None,
        checkpoint_every=updates,
        eval_prompts=8,  # the trainer's own summary; the comparison uses evaluate_hf
    )
    trainer = LMTrainer.new("grpo", cfg, model_dir.parent / "policygrad-same", model_dir, quiet=True)
    setup = time.perf_counter() - start
    trainer.run()
    wall = [row["wall_time"] for row in trainer.history]
    times = [b - a for a, b in zip([0.0, *wall], wall, strict=False)]
    return {
        "setup_seconds": setup,
        "seconds_per_update": statistics.median(times[3:]),
        "updates": len(times),
        "parameters": trainer.policy.num_parameters(),
        "reward_curve": [row["reward_mean"] for row in trainer.history],
        "final_eval_reward": evaluate_hf(trainer.policy.model),
    }


def _one(trainer: str, kind: str, folder: Path, steps: int) -> dict[str, object]:
    """Run one trainer in a fresh interpreter, so its import time counts in its set-up."""
    import subprocess
    import sys

    command = [sys.executable, __file__, "--one", trainer, kind, "--steps", str(steps), "--folder", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _run_one(trainer: str, kind: str, folder: Path, steps: int) -> dict[str, object]:
    """The body of ``--one``: one trainer, in this interpreter."""
    if kind == "same-model":
        model_dir = folder / "llama-sum"
        # each run trains a copy: the trainers write next to the model they train
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            import shutil

            shutil.copytree(model_dir, Path(tmp) / "llama-sum")
            run = run_trl_same_model if trainer == "trl" else run_policygrad_same_model
            return run(Path(tmp) / "llama-sum", steps)
    if trainer == "trl":
        result = run_trl(kind, folder, steps)
        result["parameters"] = json.loads((folder / "parameters.json").read_text())
        return result
    return run_policygrad(kind, steps)


def _curve_points(curve: list[float], points: int = 5) -> str:
    """The training reward averaged over ``points`` equal blocks of updates."""
    size = max(1, len(curve) // points)
    blocks = [curve[i : i + size] for i in range(0, size * points, size) if curve[i : i + size]]
    return " → ".join(f"{sum(b) / len(b):.2f}" for b in blocks)


def _print_same_model(best: dict[str, dict], runs: dict[str, list[dict]], updates: int, repeats: int) -> None:
    trl_speed = 1.0 / best["TRL grpo"]["seconds_per_update"]
    print(f"\nSame model: a {best['TRL grpo']['parameters']:,}-parameter Llama pretrained on sum, grpo (dapo loss)")
    print(f"(best of {repeats} alternating runs, median of {updates - 3} timed updates; rewards: mean over runs)\n")
    print(
        f"| trainer | s / update | updates / s | vs TRL | reward after {updates} updates "
        "| training reward (5 blocks of updates) | import + set-up s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ("TRL grpo", "policygrad grpo"):
        r, all_runs = best[name], runs[name]
        speed = 1.0 / r["seconds_per_update"]
        final = statistics.mean(x["final_eval_reward"] for x in all_runs)
        curve = [statistics.mean(c) for c in zip(*(x["reward_curve"] for x in all_runs), strict=False)]
        print(
            f"| {'TRL 1.16 GRPOTrainer' if name.startswith('TRL') else name} | {r['seconds_per_update']:.3f} "
            f"| {speed:.1f} | ×{speed / trl_speed:.1f} | {final:.3f} | {_curve_points(curve)} "
            f"| {min(x['setup_seconds'] for x in all_runs):.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=("same", "size", "both"), default="both")
    parser.add_argument("--steps", type=int, default=20, help="updates of the same-size comparison")
    parser.add_argument("--updates", type=int, default=40, help="updates K of the same-model comparison")
    parser.add_argument("--repeats", type=int, default=2, help="alternate the trainers this many times")
    parser.add_argument("--out", default="benchmarks/results/lm_trl.json")
    parser.add_argument("--one", nargs=2, metavar=("TRAINER", "KIND"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.one:
        start = time.perf_counter()
        result = _run_one(*args.one, Path(args.folder), args.steps)
        result["wall_seconds"] = time.perf_counter() - start
        print(json.dumps(result))
        return
    from policygrad.lm.hf import save_tiny_llama

    results: dict[str, list[dict]] = {}
    same: dict[str, list[dict]] = {}
    reference_reward = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.compare in ("size", "both"):
            (folder / "parameters.json").write_text(json.dumps(save_tiny_llama(folder / "model")))
        if args.compare in ("same", "both"):
            reference_reward = pretrain_sum_llama(folder)
        for _ in range(args.repeats):  # alternate, so a noisy neighbour hits every trainer alike
            for trainer in ("trl", "policygrad"):
                name = f"{'TRL' if trainer == 'trl' else 'policygrad'}"
                if args.compare in ("same", "both"):
                    same.setdefault(f"{name} grpo", []).append(_one(trainer, "same-model", folder, args.updates))
                if args.compare in ("size", "both"):
                    for kind in ("grpo", "rloo"):
                        results.setdefault(f"{name} {kind}", []).append(_one(trainer, kind, folder, args.steps))
    import os

    import trl

    versions = {"trl": trl.__version__, "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    record = {"versions": versions, "runs": results, "same_model": same, "reference_reward": reference_reward}
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"TRL {trl.__version__}, torch {torch.__version__}, 1 thread; load average {os.getloadavg()[0]:.1f}")
    if same:
        best = {name: min(runs, key=lambda r: r["seconds_per_update"]) for name, runs in same.items()}
        _print_same_model(best, same, args.updates, args.repeats)
        print(f"\nthe pretrained model before RL: reward {reference_reward:.3f}")
    if not results:
        return
    best = {name: min(runs, key=lambda r: r["seconds_per_update"]) for name, runs in results.items()}
    setup = {name: min(r["setup_seconds"] for r in runs) for name, runs in results.items()}
    print(f"\nSame size: 64 completions × 16 tokens, β = {BETA}")
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
