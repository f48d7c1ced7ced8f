"""The training loop: collect → estimate → update → log → evaluate → checkpoint.

The same loop runs all five algorithms; each contributes only its ``update`` and how it
collects (complete episodes, or fixed-length segments of running episodes).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policygrad import env_faults, env_source, kernels, run_state, spaces
from policygrad import envs as envs_lib
from policygrad.agent import Agent, AgentSpec
from policygrad.algorithms import get_algorithm
from policygrad.checkpoint import discard_newer, load_latest, save_checkpoint
from policygrad.collectors import make_collector
from policygrad.config import build_config, load_preset, scheduled
from policygrad.errors import NonFiniteLossError
from policygrad.evaluation import evaluate
from policygrad.optim import Adam
from policygrad.run_log import MetricsLog, make_progress, plot_learning_curve
from policygrad.runs import (
    SUMMARY_FILE,
    RunInterrupted,
    check_new_run_dir,
    default_run_dir,
    lock_run_dir,
    non_finite_error,
    peak_rss_mb,
    read_resume_config,
    stop_signals,
    write_run_config,
    write_summary,
)
from policygrad.runtime import frozen_gc

#: Called with each update's metrics row; returning True stops training (see :meth:`Trainer.run`).
UpdateCallback = Callable[[dict[str, Any]], bool | None]


def resolve_config(
    algo: str, env_id: str, overrides: dict[str, Any], from_file: dict[str, Any] | None = None
) -> tuple[Any, bool]:
    """The algorithm's config: defaults ← preset for (algo, env_id) if one exists ← overrides.

    ``from_file``: the values of a preset file (``policygrad train --preset FILE``), used instead
    of the shipped preset.

    Returns ``(config, preset_used)``.
    """
    module = get_algorithm(algo)
    preset = load_preset(algo, env_id) if ":" not in env_id else None
    values: dict[str, Any] = dict(preset or {}) if from_file is None else dict(from_file)
    values.update(overrides)
    values["env_id"] = env_id
    cfg = build_config(module.Config, values)
    # An unknown or unimportable environment, or an unknown wrapper, fails here, in one line.
    env_source.resolve(cfg.env_id, cfg.env_kwargs, cfg.wrappers)
    return cfg, preset is not None


class Trainer:
    """One training run bound to its run folder. Build with :meth:`new` or :meth:`resume`."""

    def __init__(self, algo: str, cfg: Any, run_dir: Path, quiet: bool = False) -> None:
        self.algo_name = algo
        self.algo = get_algorithm(algo)
        self.cfg = cfg
        self.run_dir = run_dir
        self.quiet = quiet
        #: The environment's id registered in this process (``env_id`` made with ``env_kwargs``).
        self.env_key = env_source.resolve(cfg.env_id, cfg.env_kwargs, cfg.wrappers)
        self.history: list[dict[str, Any]] = []
        self.counters: dict[str, Any] = {
            "env_step": 0,
            "train_seconds": 0.0,
            "eval_seconds": 0.0,
            "target_reached_step": None,
            "target_reached_train_seconds": None,
            "last_eval": None,
        }
        self.update = 0
        self.lock = None  # the run folder's lock (policygrad.runs.lock_run_dir), held until close()
        self._last_save_time = time.monotonic()
        torch.set_num_threads(cfg.threads)

    # ----- construction ----------------------------------------------------------------
    @classmethod
    def new(cls, algo: str, cfg: Any, run_dir: Path, preset_used: bool = False, quiet: bool = False) -> Trainer:
        run_dir = Path(run_dir)
        check_new_run_dir(run_dir)
        self = cls(algo, cfg, run_dir, quiet)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self._make_envs()  # first: an unusable environment must not leave a run folder behind
        self.lock = lock_run_dir(run_dir)  # one writer: a second train --out run_dir stops here
        check_new_run_dir(run_dir)  # again, now that no other process can be writing it
        write_run_config(run_dir, {"algo": algo, "preset": preset_used, "config": cfg.to_dict()})
        info, kinds = self.info, ("discrete", "multi_discrete")
        masked = cfg.action_masking and info.action_kind in kinds and envs_lib.provides_action_masks(self.env_key)
        self.agent = Agent(AgentSpec.for_run(info, cfg, critic=self.algo.USES_CRITIC, masked=masked))
        self.optimizer = Adam(self.agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
        self.collector = self._guarded_collector()  # here, or Ray
        self._select_learner()  # after every option was checked: a refused run prints one line
        self.collector.reset(envs_lib.reset_seeds(self.vectorization, cfg.seed, cfg.num_envs))
        self.log = MetricsLog(run_dir)
        return self

    @classmethod
    def resume(
        cls,
        run_dir: Path,
        total_steps: int | None = None,
        quiet: bool = False,
        trust_run_folder: bool = False,
        from_checkpoint: int | None = None,
    ) -> Trainer:
        """Continue a run from its newest checkpoint; ``trust_run_folder``: see :func:`run_state.restore_envs`."""
        run_dir = Path(run_dir)
        saved, cfg, lock = read_resume_config(run_dir, "gym", get_algorithm, "total_steps", total_steps)  # locked
        checkpoint = load_latest(run_dir, from_checkpoint)  # never a silent fall back past a damaged one
        if from_checkpoint is not None:
            discard_newer(run_dir, from_checkpoint)  # and says so
        self = cls(saved["algo"], cfg, run_dir, quiet)
        self.lock = lock
        state = checkpoint.state
        self.update = state["update"]
        self.counters.update(state["counters"])
        if total_steps is not None and total_steps > self.counters["env_step"]:
            self.counters["stopped"] = None  # --steps extends a finished run
        self.agent = checkpoint.build_agent()
        self.optimizer = Adam(self.agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
        checkpoint.restore_optimizer(self.optimizer)
        checkpoint.restore_rng()
        np.random.set_state(run_state.numpy_rng_from_json(state["numpy_rng"]))
        remake = lambda: (self._make_envs(), self.envs)[1]  # noqa: E731 - fresh envs, self.info set
        self.envs, restored = run_state.restore_envs(remake, checkpoint, trust_run_folder)
        self.collector = self._guarded_collector()
        self.collector.trust_pickles = trust_run_folder  # may the Ray workers' pickled envs be unpickled
        self._select_learner()
        self.collector.load_state_dict(state["collector"], with_env_state=restored)
        if not restored:
            self.collector.reset(envs_lib.reset_seeds(self.vectorization, cfg.seed + 7919 * self.update, cfg.num_envs))
        MetricsLog.truncate(run_dir, self.update)
        self.history = run_state.read_history(run_dir)
        self.log = MetricsLog(run_dir, purge_step=self.counters["env_step"] + 1)
        self._say(
            f"resuming {saved['algo']} on {cfg.env_id} from update {self.update} "
            f"({self.counters['env_step']:,} env steps) of {cfg.total_steps:,}"
        )
        return self

    def _make_envs(self) -> None:
        cfg = self.cfg
        self.vectorization = envs_lib.resolve_vectorization(self.env_key, cfg.vectorization)
        self.envs, self.info = envs_lib.make_envs(
            self.env_key,
            cfg.num_envs,
            self.vectorization,
            gamma=cfg.gamma,
            normalize_obs=cfg.normalize_obs,
            normalize_reward=cfg.normalize_reward,
            clip_obs=cfg.clip_obs,
            clip_reward=cfg.clip_reward,
        )

    def _guarded_collector(self) -> env_faults.GuardedCollector:
        """The run's collector, its rollouts scanned for NaN/inf (observations only where they can hold one)."""
        space = self.envs.single_observation_space
        scan = self.cfg.normalize_obs or not spaces.always_finite(space)
        return env_faults.GuardedCollector(make_collector(self.envs, self.agent, self.cfg), check_observations=scan)

    def _select_learner(self) -> None:
        """The learner under every gradient step of the run, chosen once (``policygrad.kernels.select``)."""
        self.learner = kernels.select(self.agent, self.optimizer, self.cfg)
        self._say(kernels.describe(self.learner))

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)

    # ----- the loop --------------------------------------------------------------------
    def run(self, on_update: UpdateCallback | None = None) -> tuple[Agent, list[dict[str, Any]]]:
        """Train until ``total_steps`` (or the target return); returns the agent and its history.

        ``on_update`` (optional) is called with each update's metrics row; returning True
        stops training there (stop reason "callback"), e.g. for a live curve with a Stop button.
        """
        with frozen_gc():
            return self._run(on_update)

    def _run(self, on_update: UpdateCallback | None) -> tuple[Agent, list[dict[str, Any]]]:
        cfg, counters = self.cfg, self.counters
        progress = make_progress(self.quiet)
        if self.update == 0:
            self._save()  # the starting point is a checkpoint too: any failure can resume from it
        last_saved = self.update
        try:
            with progress, stop_signals() as signalled:
                task = progress.add_task(
                    f"{self.algo_name} {cfg.env_id}",
                    total=cfg.total_steps,
                    completed=min(counters["env_step"], cfg.total_steps),
                )
                while counters.get("stopped") is None and counters["env_step"] < cfg.total_steps:
                    iteration_start = time.perf_counter()
                    train_before, eval_before = counters["train_seconds"], counters["eval_seconds"]
                    row = self._one_update()
                    self._maybe_evaluate(row)
                    self.log.write(row)
                    self.history.append(row)
                    progress.update(
                        task,
                        completed=min(counters["env_step"], cfg.total_steps),
                        sps=row["steps_per_second"],
                        ret=row["episodic_return_mean"],
                        eval=counters["last_eval"],
                    )
                    reached = cfg.target_return is not None and counters["target_reached_step"] == counters["env_step"]
                    stop = "target" if reached else "budget" if counters["env_step"] >= cfg.total_steps else None
                    if on_update is not None and on_update(row) and stop is None:  # it sees every row
                        stop = "callback"
                    if stop is not None:  # the stop decision goes into the checkpoint: no resume trains past it
                        counters["stopped"], counters["stopped_update"] = stop, self.update
                    if stop is not None or signalled or self._checkpoint_due():
                        self._save()
                        last_saved = self.update
                    # Training time is wall-clock minus evaluation: logging and checkpoints count too.
                    iteration = time.perf_counter() - iteration_start - (counters["eval_seconds"] - eval_before)
                    counters["train_seconds"] = train_before + iteration
                    if signalled and stop is None:
                        raise RunInterrupted(self.run_dir, self.update, signalled[0])
        except BaseException as err:
            self.close()  # and release the run folder
            if not isinstance(err, NonFiniteLossError):
                raise
            advice = "lower learning_rate or enable normalize_reward"
            raise non_finite_error(err, self.update + 1, last_saved, advice) from None
        if last_saved != self.update:
            self._save()
        self._finish(counters.get("stopped") or "budget")
        self.close()
        return self.agent, self.history

    @property
    def finished(self) -> bool:
        """Whether the run already stopped (the decision is in its checkpoint): nothing to train."""
        return self.counters.get("stopped") is not None or self.counters["env_step"] >= self.cfg.total_steps

    def finished_message(self) -> str:
        return run_state.finished_message(self.counters, self.cfg.total_steps, self.update)

    def complete(self) -> bool:
        """Write the summary of a finished run killed before writing it; True if it did."""
        missing = not (self.run_dir / SUMMARY_FILE).exists()
        return missing and bool(self._finish(self.counters.get("stopped") or "budget"))

    def _checkpoint_due(self) -> bool:
        """Every ``checkpoint_every`` updates, and whenever ``checkpoint_seconds`` have passed."""
        cfg = self.cfg
        by_count = cfg.checkpoint_every > 0 and self.update % cfg.checkpoint_every == 0
        return by_count or time.monotonic() - self._last_save_time >= cfg.checkpoint_seconds

    def _one_update(self) -> dict[str, Any]:
        counters = self.counters
        cfg = scheduled(self.cfg, counters["env_step"])  # this update's learning rate and clip range
        start = time.perf_counter()
        lr = cfg.learning_rate
        if cfg.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        if self.algo.COLLECT == "episodes":
            rollout = self.collector.collect_episodes(self._episode_cap(), self.update)
        else:
            rollout = self.collector.collect(cfg.rollout_steps, self.update)
        variance: dict[str, float] = {}
        if cfg.log_gradient_variance:  # before the update: at the policy that collected the rollout
            from policygrad.diagnostics import gradient_variance

            variance = gradient_variance(self.agent, rollout, self.algo, cfg)
        metrics = self.algo.update(self.learner, rollout, cfg, self.update)
        metrics.update(variance)
        elapsed = time.perf_counter() - start
        lengths = self.collector.recent_lengths
        self.update += 1
        counters["env_step"] += rollout.num_steps
        counters["train_seconds"] += elapsed
        return {
            "update": self.update,
            "env_step": counters["env_step"],
            "wall_time": counters["train_seconds"],
            "episodic_return_mean": self.collector.mean_recent_return(),
            "episodic_length_mean": sum(lengths) / len(lengths) if lengths else math.nan,
            **metrics,
            "learning_rate": lr,
            **({"clip_coef": cfg.clip_coef} if getattr(cfg, "anneal_clip", False) else {}),  # TensorBoard's curve
            "steps_per_second": rollout.num_steps / max(elapsed, 1e-9),
        }

    def _episode_cap(self) -> int:
        limit = self.info.max_episode_steps
        cap = self.cfg.max_episode_steps
        return min(cap, limit + 1) if limit else cap

    def _maybe_evaluate(self, row: dict[str, Any]) -> None:
        cfg, counters = self.cfg, self.counters
        step = counters["env_step"]
        previous = step - (self.history[-1]["env_step"] if self.history else 0)
        due = cfg.eval_every > 0 and (step // cfg.eval_every) > ((step - previous) // cfg.eval_every)
        final = step >= cfg.total_steps
        if not (due or final):
            return
        start = time.perf_counter()
        self._sync_normalizer()
        returns = evaluate(self.agent, self.env_key, cfg.eval_episodes, cfg.seed)
        counters["eval_seconds"] += time.perf_counter() - start
        mean = float(returns.mean())
        counters["last_eval"] = mean
        counters["last_eval_std"] = float(returns.std())
        row["eval_return_mean"] = mean
        if cfg.target_return is not None and mean >= cfg.target_return and counters["target_reached_step"] is None:
            counters["target_reached_step"] = step
            counters["target_reached_train_seconds"] = counters["train_seconds"]

    def _sync_normalizer(self) -> None:
        """Copy the env's observation statistics into the agent, so it acts on raw observations."""
        stats = envs_lib.normalizer_state(self.envs).get("obs")
        if stats is not None:
            self.agent.obs_mean.copy_(torch.tensor(stats["mean"], dtype=torch.float64))
            self.agent.obs_var.copy_(torch.tensor(stats["var"], dtype=torch.float64))

    def _save(self) -> None:
        self.log.flush()  # every update the checkpoint covers is in metrics.csv
        self._sync_normalizer()
        state = {
            "algo": self.algo_name,
            "config": self.cfg.to_dict(),
            "counters": self.counters,
            "collector": self.collector.state_dict(),
            "normalizer": envs_lib.normalizer_state(self.envs),
            "numpy_rng": run_state.numpy_rng_to_json(np.random.get_state()),
        }
        saved_envs, env_pickle = run_state.save_envs(self.envs)  # as data: resume never unpickles it
        state.update(saved_envs)
        self._last_save_time = time.monotonic()
        save_checkpoint(
            self.run_dir, self.update, self.agent, self.optimizer, state, env_pickle, keep=self.cfg.keep_checkpoints
        )

    def _finish(self, stop_reason: str) -> dict[str, Any]:
        cfg, counters = self.cfg, self.counters
        self.log.flush()  # the learning curve is drawn from metrics.csv
        if counters["last_eval"] is None or (self.history and self.history[-1].get("eval_return_mean") is None):
            start = time.perf_counter()
            self._sync_normalizer()
            returns = evaluate(self.agent, self.env_key, cfg.eval_episodes, cfg.seed)
            counters["eval_seconds"] += time.perf_counter() - start
            counters["last_eval"], counters["last_eval_std"] = float(returns.mean()), float(returns.std())
        summary = {
            "algo": self.algo_name,
            "env_id": cfg.env_id,
            "seed": cfg.seed,
            "learner": self.learner.name,
            "stopped": stop_reason,
            "updates": self.update,
            "env_steps": counters["env_step"],
            "train_seconds": counters["train_seconds"],
            "eval_seconds": counters["eval_seconds"],
            "steps_per_second": counters["env_step"] / max(counters["train_seconds"], 1e-9),
            "peak_rss_mb": peak_rss_mb(),
            "final_eval_mean": counters["last_eval"],
            "final_eval_std": counters.get("last_eval_std"),
            "eval_episodes": cfg.eval_episodes,
            "target_return": cfg.target_return,
            "target_reached_step": counters["target_reached_step"],
            "target_reached_train_seconds": counters["target_reached_train_seconds"],
        }
        write_summary(self.run_dir, summary)
        plot_learning_curve(self.run_dir, f"{self.algo_name} on {cfg.env_id} (seed {cfg.seed})")
        if not self.quiet:
            print(
                f"{self.algo_name} on {cfg.env_id}: {counters['env_step']:,} env steps in "
                f"{counters['train_seconds']:.1f} s ({summary['steps_per_second']:,.0f} steps/s); "
                f"evaluation {counters['last_eval']:.1f} ± {counters.get('last_eval_std') or 0.0:.1f} over "
                f"{cfg.eval_episodes} episodes"
                + (" — target reached" if stop_reason == "target" else "")
                + f"\nrun folder: {self.run_dir}  (curve: {self.run_dir / 'learning_curve.png'})",
                file=sys.stderr,
            )
        return summary

    def close(self) -> None:
        self.log.close()
        self.envs.close()
        if hasattr(self.collector, "close"):  # Ray workers (and a private Ray instance) stop here
            self.collector.close()
        if self.lock is not None:
            self.lock.release()


def train(
    algo: str,
    env_id: str | Callable[[], Any] = "CartPole-v1",
    *,
    out: str | Path | None = None,
    quiet: bool = True,
    **overrides: Any,
) -> tuple[Agent, list[dict[str, Any]]]:
    """Train ``algo`` on ``env_id``; returns ``(agent, history)`` (one dict per update).

    ``env_id``: a registered id, ``"module:EnvId"``, or a top-level function of an importable
    module that returns a ``gymnasium.Env`` (recorded as ``"module:function"`` so that eval and
    resume rebuild it); ``env_kwargs={...}`` passes keyword arguments to the environment.

    Hyperparameters come from the shipped preset for the pair when one exists, then
    from ``overrides`` (any config field, e.g. ``total_steps=50_000``). The run folder
    (``out``, default ``runs/<algo>-<env>-seed<seed>``) gets the usual logs and checkpoints.
    """
    if callable(env_id):  # a function that makes the env: recorded by its importable name
        env_id = env_source.name_of_callable(env_id)
    cfg, preset_used = resolve_config(algo, env_id, overrides)
    run_dir = Path(out) if out is not None else default_run_dir(algo, env_source.label(env_id), cfg.seed)
    return Trainer.new(algo, cfg, run_dir, preset_used, quiet=quiet).run()


def load(run_dir: str | Path) -> Agent:
    """The agent of a run's newest checkpoint; ``agent.act(obs)`` acts on raw observations."""
    agent = load_latest(Path(run_dir)).build_agent()
    agent.eval()
    return agent


__all__ = ["train", "load", "Trainer", "resolve_config"]
