"""The token training loop: sample → score → reward → advantages → update → log → checkpoint.

One update: draw ``prompts_per_update`` prompts, sample K responses to each with the
policy (KV cache, inverse-CDF sampling), score them with the task, compute the
reference's log-probs, build the (N, T) :class:`~policygrad.lm.rollout.TokenRollout`,
and hand it to the algorithm's ``update``. Prompts and sampling noise are keyed by
(seed, update), so a resumed run repeats exactly what an uninterrupted one does.

A run folder holds ``config.json``, ``reference/`` (the reference model, unless it
was given as a path to a Hugging Face model), ``metrics.csv``, ``tensorboard/``,
``checkpoints/``, ``policy/`` (the final policy, a model folder) and ``summary.json``.
With ``lora_rank`` the checkpoints hold the adapters (and value head) only, and
``policy/`` is peft's adapter folder naming the base model's folder.
"""

from __future__ import annotations

import copy
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from policygrad import runs
from policygrad.checkpoint import discard_newer
from policygrad.config import build_config
from policygrad.errors import NonFiniteLossError, PolicygradError
from policygrad.lm.algorithms import get_algorithm
from policygrad.lm.checkpoint import load_latest_lm, save_lm_checkpoint
from policygrad.lm.dynamic_sampling import sample_with_signal
from policygrad.lm.generation import Samples, generate, sampling_uniforms, score
from policygrad.lm.head import set_head_path
from policygrad.lm.losses import sequence_kl
from policygrad.lm.metrics import LMMetricsLog
from policygrad.lm.model import read_model_config
from policygrad.lm.models import is_hf_model, load_policy_model, save_policy_model
from policygrad.lm.pretrain import PretrainConfig, pretrain
from policygrad.lm.reward_shaping import soft_overlong_penalty
from policygrad.lm.rollout import build_rollout
from policygrad.lm.tasks import Task, get_task
from policygrad.run_log import make_progress
from policygrad.runs import check_new_run_dir, non_finite_error, peak_rss_mb, write_run_config, write_summary
from policygrad.runtime import frozen_gc
from policygrad.seeding import Stream, stream_seed

REFERENCE_DIR = "reference"
POLICY_DIR = "policy"


def default_run_dir(algo: str, task: str, seed: int) -> Path:
    """``runs/lm-<algo>-<task>-seed<seed>``, with a numeric suffix if that exists."""
    return runs.default_run_dir(algo, task, seed, prefix="lm-")


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The ``config.json`` of an lm run folder, or a one-line error (see :func:`policygrad.runs.read_run_config`)."""
    return runs.read_run_config(run_dir, "lm")


class LMTrainer:
    """One token-training run bound to its run folder. Build with :meth:`new` or :meth:`resume`."""

    def __init__(self, algo: str, cfg: Any, run_dir: Path, task: Task, quiet: bool) -> None:
        self.algo_name = algo
        self.algo = get_algorithm(algo)
        self.cfg = cfg
        self.run_dir = run_dir
        self.task = task
        self.quiet = quiet
        self.update = 0
        self.counters: dict[str, Any] = {"tokens": 0, "train_seconds": 0.0, "pretrain_seconds": 0.0}
        self.history: list[dict[str, Any]] = []
        self._ray_sampler: Any = None  # Ray workers while run() runs with backend = "ray"
        self.lock: runs.RunLock | None = None  # the run folder's lock, held until close()

    # ----- construction ----------------------------------------------------------------
    @classmethod
    def new(
        cls,
        algo: str,
        cfg: Any,
        run_dir: Path,
        reference: Path | None = None,
        vocab_size: int | None = None,
        quiet: bool = False,
    ) -> LMTrainer:
        """Start a run; pretrains a reference into ``run_dir/reference`` when none is given.

        ``vocab_size`` is that of the reference to pretrain (default 16); a given
        reference brings its own.
        """
        run_dir = Path(run_dir)
        check_new_run_dir(run_dir, "lm")
        module = get_algorithm(algo)
        if cfg.lora_rank and (reference is None or not is_hf_model(reference)):
            raise PolicygradError(
                "lora_rank needs a Hugging Face model (--ref HF_FOLDER); policygrad's own transformer has no adapters"
            )
        if reference is not None and not is_hf_model(reference):
            own = read_model_config(reference).get("model", {}).get("vocab_size")
            if vocab_size is not None and own is not None and own != vocab_size:
                raise PolicygradError(f"--vocab-size {vocab_size} does not match the reference's {own} tokens")
            vocab_size = own
        vocab_size = vocab_size or 16
        task = get_task(cfg.task, vocab_size)
        if cfg.backend == "ray":  # an unreachable cluster is reported now, not after pretraining
            from policygrad.distributed.ray_workers import check_reachable, ray_address

            if (address := ray_address(cfg.ray_address)) is not None:
                check_reachable(address)
        torch.set_num_threads(cfg.threads)
        lock = runs.lock_run_dir(run_dir)  # one writer: a second lm train --out run_dir stops here
        check_new_run_dir(run_dir, "lm")  # again, now that no other process can be writing it
        self = cls(algo, cfg, run_dir, task, quiet)
        self.lock = lock
        ref_dir = run_dir / REFERENCE_DIR
        if reference is None:
            self._say(f"no --ref given: pretraining a reference for '{cfg.task}' into {ref_dir}")
            # pretraining gets at most 40 % of a time budget (it needs far less on an idle machine)
            budget = 0.4 * cfg.max_train_seconds if cfg.max_train_seconds is not None else None
            pre_cfg = PretrainConfig(seed=cfg.seed, vocab_size=vocab_size, max_seconds=budget)
            _, stats = pretrain(cfg.task, pre_cfg, ref_dir, quiet)
            self.counters["pretrain_seconds"] = stats["pretrain_seconds"]
            ref_path = ref_dir
        elif is_hf_model(reference):
            ref_path = Path(reference).resolve()  # large: referenced by path, not copied
        else:
            load_policy_model(reference, task)  # validate before copying
            if ref_dir.exists():
                shutil.rmtree(ref_dir)
            shutil.copytree(reference, ref_dir)
            ref_path = ref_dir
        self.reference, _ = load_policy_model(ref_path, task)
        self.policy = self._policy_from_reference(module.USES_VALUE_HEAD)
        saved = {"algo": algo, "reference": str(ref_path), "vocab_size": vocab_size, "config": cfg.to_dict()}
        write_run_config(run_dir, saved)
        torch.manual_seed(cfg.seed)
        self.optimizer = self._make_optimizer()
        self.log = LMMetricsLog(run_dir)
        return self

    @classmethod
    def resume(
        cls, run_dir: Path, updates: int | None = None, quiet: bool = False, from_checkpoint: int | None = None
    ) -> LMTrainer:
        """Continue a run from its newest checkpoint (``updates`` extends its budget)."""
        run_dir = Path(run_dir)
        saved, cfg, lock = runs.read_resume_config(run_dir, "lm", get_algorithm, "updates", updates)  # locked
        module = get_algorithm(saved["algo"])
        checkpoint = load_latest_lm(run_dir, from_checkpoint)  # never a silent fall back past a damaged one
        if from_checkpoint is not None:
            discard_newer(run_dir, from_checkpoint)  # and says so
        torch.set_num_threads(cfg.threads)
        self = cls(saved["algo"], cfg, run_dir, get_task(cfg.task, saved["vocab_size"]), quiet)
        self.lock = lock
        self.reference, _ = load_policy_model(Path(saved["reference"]), self.task)
        self.policy = self._policy_from_reference(module.USES_VALUE_HEAD)
        self.optimizer = self._make_optimizer()
        checkpoint.restore(self.policy, self.optimizer)
        self.update = checkpoint.state["update"]
        self.counters.update(checkpoint.state["counters"])
        if updates is not None and updates > self.update:
            self.counters["stopped"] = None  # --updates extends a finished run
        rows = LMMetricsLog.truncate(run_dir, self.update)
        self.history = [{k: float(v) for k, v in r.items() if v != ""} for r in rows]
        self.log = LMMetricsLog(run_dir, purge_step=self.update + 1)
        self._say(f"resuming lm {saved['algo']} on {cfg.task} from update {self.update} of {cfg.updates}")
        return self

    def _policy_from_reference(self, value_head: bool) -> torch.nn.Module:
        """The policy to train: a copy of the reference, or with ``lora_rank`` the reference itself in adapters.

        With LoRA the reference becomes the policy with its adapters off (one copy of the weights).
        """
        set_head_path(self.reference, self.cfg.head_path)  # the policy, a deep copy, keeps it
        if self.cfg.lora_rank:
            policy = self.reference
            policy.add_lora(self.cfg.lora_rank, self.cfg.lora_alpha, self.cfg.seed)
            self.reference = policy.without_adapters()
        else:
            policy = copy.deepcopy(self.reference)
            self.reference.requires_grad_(False)
        if value_head:
            policy.add_value_head()
        return policy

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.cfg.learning_rate)

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)

    # ----- the loop --------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train until ``updates`` (or ``max_train_seconds``); write the summary; return it."""
        with frozen_gc():
            return self._run()

    def _run(self) -> dict[str, Any]:
        cfg, counters = self.cfg, self.counters
        progress = make_progress(self.quiet)
        stop_reason = "budget"
        last_saved = self.update
        try:
            if cfg.backend == "ray" and self.update < cfg.updates:
                self._start_ray_sampler()
            with progress, runs.stop_signals() as signalled:
                bar = progress.add_task(f"lm {self.algo_name} {cfg.task}", total=cfg.updates, completed=self.update)
                while self.update < cfg.updates and counters.get("stopped") is None:
                    if signalled:
                        self._save()
                        raise runs.RunInterrupted(self.run_dir, self.update, signalled[0], "lm")
                    if cfg.max_train_seconds is not None and self.seconds_used() >= cfg.max_train_seconds:
                        stop_reason = "time"
                        break
                    row = self._one_update()
                    self.log.write(row)
                    self.history.append(row)
                    progress.update(
                        bar,
                        completed=self.update,
                        sps=self.update / max(counters["train_seconds"], 1e-9),
                        ret=row["reward_mean"],
                    )
                    if self.update % cfg.checkpoint_every == 0:
                        self._save()
                        last_saved = self.update
        except NonFiniteLossError as err:
            self.close()
            raise non_finite_error(err, self.update + 1, last_saved, "lower learning_rate") from None
        except BaseException:  # a worker fault, an interrupt: the workers (and a private Ray) stop too
            self._stop_ray_sampler()
            raise
        self._stop_ray_sampler()
        if counters.get("stopped") is None:  # the stop decision goes into the last checkpoint
            counters["stopped"], counters["stopped_update"] = stop_reason, self.update
            self._save()
        elif last_saved != self.update:
            self._save()
        summary = self._finish(counters["stopped"])
        self.close()
        return summary

    def _one_update(self) -> dict[str, Any]:
        cfg, task = self.cfg, self.task
        start = time.perf_counter()
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        generator = torch.Generator().manual_seed(stream_seed(cfg.seed, Stream.LM_ROLLOUT, self.update))
        group_ids = torch.arange(cfg.prompts_per_update).repeat_interleave(cfg.samples_per_prompt)

        def draw(groups: int) -> tuple[Samples, torch.Tensor]:
            prompts = task.prompts(groups, generator).repeat_interleave(cfg.samples_per_prompt, dim=0)
            uniforms = sampling_uniforms(generator, prompts.shape[0], task.response_length)
            samples = self._sample(prompts, task.response_length, uniforms, task.stop_at_eos)
            penalty = soft_overlong_penalty(samples.lengths, task.response_length, cfg.soft_punish_cache)
            return samples, task.reward(prompts, samples.responses) + penalty

        sampling_metrics: dict[str, float] = {}
        if cfg.dynamic_sampling:
            samples, scores, sampling_metrics = sample_with_signal(
                draw, cfg.prompts_per_update, cfg.samples_per_prompt, cfg.max_sampling_rounds
            )
        else:
            samples, scores = draw(cfg.prompts_per_update)
        prompts = samples.prompts
        with torch.no_grad():
            ref_log_probs = score(self.reference, prompts, samples.responses).log_probs
        rollout = build_rollout(samples, scores, ref_log_probs, group_ids, cfg.kl_coef, cfg.kl_in == "reward")
        metrics = self.algo.update(self.policy, self.optimizer, rollout, cfg, self.update)
        elapsed = time.perf_counter() - start
        tokens = int(samples.mask.sum())
        self.update += 1
        self.counters["tokens"] += tokens
        self.counters["train_seconds"] += elapsed
        return {
            "update": self.update,
            "tokens": self.counters["tokens"],
            "wall_time": self.counters["train_seconds"],
            "reward_mean": scores.mean().item(),
            "success_rate": task.success(prompts, samples.responses).float().mean().item(),
            **sequence_kl(samples.log_probs, ref_log_probs * samples.mask, samples.mask),
            "response_length_mean": samples.lengths.float().mean().item(),
            **metrics,
            **sampling_metrics,
            "learning_rate": lr,
            "tokens_per_second": tokens / max(elapsed, 1e-9),
        }

    def _sample(self, prompts: torch.Tensor, length: int, uniforms: torch.Tensor, stop_at_eos: bool) -> Samples:
        """The update's responses: sampled here, or by Ray workers with ``backend = "ray"`` (the same bits)."""
        if self._ray_sampler is None:
            return generate(self.policy, prompts, length, uniforms, stop_at_eos)
        return self._ray_sampler.generate(prompts, length, uniforms, stop_at_eos)

    def _start_ray_sampler(self) -> None:
        from policygrad.lm.ray_sampling import RaySampler  # Ray is imported only here

        self._ray_sampler = RaySampler(self.policy, self.cfg)

    def _stop_ray_sampler(self) -> None:
        if self._ray_sampler is not None:
            self._ray_sampler.close()
            self._ray_sampler = None

    @property
    def finished(self) -> bool:
        """Whether the run already stopped (the decision is in its checkpoint): nothing to train."""
        return self.counters.get("stopped") is not None or self.update >= self.cfg.updates

    def finished_message(self) -> str:
        at = self.counters.get("stopped_update", self.update)
        if self.counters.get("stopped") == "time":
            return f"finished (time budget spent at update {at})"
        return f"finished (all {self.cfg.updates} updates done)"

    def complete(self) -> bool:
        """Write the summary of a finished run killed before writing it; True if it did."""
        missing = not (self.run_dir / runs.SUMMARY_FILE).exists()
        return missing and bool(self._finish(self.counters.get("stopped") or "budget"))

    def seconds_used(self) -> float:
        """Training seconds so far, plus the reference's pretraining when this run did it (the time budget)."""
        return self.counters["train_seconds"] + self.counters["pretrain_seconds"]

    def learning_rate(self) -> float:
        """The peak rate, or with ``anneal_lr`` decayed linearly to 10 % over the budget.

        Progress is the larger of updates/updates-budget and seconds/time-budget, so a run
        stopped by ``max_train_seconds`` has still annealed; with the time budget off (or
        not binding) the schedule depends on the update count alone and resumes exactly.
        """
        cfg = self.cfg
        if not cfg.anneal_lr:
            return cfg.learning_rate
        progress = self.update / cfg.updates
        if cfg.max_train_seconds is not None:
            progress = max(progress, self.seconds_used() / cfg.max_train_seconds)
        return cfg.learning_rate * (1.0 - 0.9 * min(progress, 1.0))

    def _save(self) -> None:
        self.log.flush()  # every update the checkpoint covers is in metrics.csv
        state = {"algo": self.algo_name, "config": self.cfg.to_dict(), "counters": self.counters}
        save_lm_checkpoint(self.run_dir, self.update, self.policy, self.optimizer, state, self.cfg.keep_checkpoints)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Reward, success and KL to the reference on ``eval_prompts`` fresh prompts (sampled, T = 1)."""
        cfg, task = self.cfg, self.task
        generator = torch.Generator().manual_seed(stream_seed(cfg.seed, Stream.LM_EVALUATION))
        prompts = task.prompts(cfg.eval_prompts, generator)
        uniforms = sampling_uniforms(generator, cfg.eval_prompts, task.response_length)
        samples = generate(model, prompts, task.response_length, uniforms, task.stop_at_eos)
        ref_log_probs = score(self.reference, prompts, samples.responses).log_probs * samples.mask
        kl = sequence_kl(samples.log_probs, ref_log_probs, samples.mask)
        return {
            "reward_mean": task.reward(prompts, samples.responses).mean().item(),
            "success_rate": task.success(prompts, samples.responses).float().mean().item(),
            "kl_k1": kl["kl_k1"],
            "kl_k3": kl["kl_k3"],
            "response_length_mean": samples.lengths.float().mean().item(),
        }

    def _finish(self, stop_reason: str) -> dict[str, Any]:
        cfg, counters = self.cfg, self.counters
        start = time.perf_counter()
        final = self.evaluate(self.policy)
        reference = self.evaluate(self.reference)
        eval_seconds = time.perf_counter() - start
        save_policy_model(self.policy, self.run_dir / POLICY_DIR, {"task": cfg.task, "algo": self.algo_name})
        kl_curve = [r["kl_k1"] for r in self.history if "kl_k1" in r]
        quarter = max(1, len(kl_curve) // 4)
        summary = {
            "algo": self.algo_name,
            "task": cfg.task,
            "seed": cfg.seed,
            "vocab_size": self.task.vocab.size,
            "stopped": stop_reason,
            "updates": self.update,
            "tokens": counters["tokens"],
            "train_seconds": counters["train_seconds"],
            "pretrain_seconds": counters["pretrain_seconds"],
            "eval_seconds": eval_seconds,
            "tokens_per_second": counters["tokens"] / max(counters["train_seconds"], 1e-9),
            "updates_per_second": self.update / max(counters["train_seconds"], 1e-9),
            "final_reward_mean": final["reward_mean"],
            "final_success_rate": final["success_rate"],
            "kl_mean": final["kl_k1"],
            "kl_k3_mean": final["kl_k3"],
            "final_response_length_mean": final["response_length_mean"],
            "kl_second_quarter_mean": _mean(kl_curve[quarter : 2 * quarter]),
            "kl_last_quarter_mean": _mean(kl_curve[-quarter:]),
            "reference_reward_mean": reference["reward_mean"],
            "reference_success_rate": reference["success_rate"],
            "kl_coef": cfg.kl_coef,
            "eval_prompts": cfg.eval_prompts,
            "peak_rss_mb": peak_rss_mb(),
        }
        write_summary(self.run_dir, summary)
        if not self.quiet:
            print(
                f"lm {self.algo_name} on {cfg.task}: {self.update} updates in {counters['train_seconds']:.1f} s "
                f"({summary['tokens_per_second']:,.0f} tokens/s); reward {final['reward_mean']:.3f} "
                f"(reference {reference['reward_mean']:.3f}), success {final['success_rate']:.3f} "
                f"(reference {reference['success_rate']:.3f}), KL to reference {final['kl_k1']:.3f} "
                f"(k3 {final['kl_k3']:.3f})\nrun folder: {self.run_dir}",
                file=sys.stderr,
            )
        return summary

    def close(self) -> None:
        """Close the metrics log, and stop the Ray workers if any."""
        self.log.close()
        self._stop_ray_sampler()
        if self.lock is not None:
            self.lock.release()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def train(
    algo: str,
    task: str = "sum",
    run_dir: Path | str | None = None,
    reference: Path | str | None = None,
    vocab_size: int | None = None,
    quiet: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Fine-tune with ``algo`` on ``task`` (Python API of ``policygrad lm train``); returns the summary."""
    module = get_algorithm(algo)
    cfg = build_config(module.Config, {"task": task, **overrides})
    get_task(task)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(algo, task, cfg.seed)
    trainer = LMTrainer.new(algo, cfg, run_dir, Path(reference) if reference else None, vocab_size, quiet)
    return trainer.run()
