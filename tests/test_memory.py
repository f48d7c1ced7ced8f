"""A training run's memory does not grow with its updates (docs/performance.md, "Memory on MuJoCo").

Peak resident memory is compared with Stable-Baselines3's by ``benchmarks/vs_sb3.py``; what a
test can hold fixed is that nothing an update, an evaluation or a checkpoint allocates outlives
the next one. The only thing a run keeps per update is its metrics row (``Trainer.history``).
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest
import torch
from test_learners import CASES, rollouts_and_agent, train_with

from policygrad.algorithms import ppo
from policygrad.trainer import Trainer, resolve_config

ROLLOUT_STEPS = 128
UPDATES = 20
#: Sampled after the first evaluation and checkpoints have made whatever they keep for the run.
FIRST_SAMPLE = 6
#: What one metrics row of ``history`` takes (about 1.5 kB: a dict of ~20 floats), with room.
ROW_BYTES = 3_000


def test_live_tensors_objects_and_traced_bytes_stay_flat_over_updates(tmp_path: Path) -> None:
    # HalfCheetah's settings at the RL zoo (normalisers clipped, joint gradient clip, PyTorch's
    # init) on Pendulum, which needs no MuJoCo; an evaluation every 3 updates, a checkpoint every update.
    settings = dict(
        num_envs=1, rollout_steps=ROLLOUT_STEPS, minibatch_size=64, update_epochs=2, normalize_obs=True,
        normalize_reward=True, clip_obs=10.0, clip_reward=10.0, grad_clip="joint", ortho_init=False,
        eval_every=3 * ROLLOUT_STEPS, eval_episodes=2, checkpoint_every=1, total_steps=UPDATES * ROLLOUT_STEPS,
    )  # fmt: skip
    cfg, _ = resolve_config("ppo", "Pendulum-v1", settings)
    samples: dict[int, tuple[int, int, int, int]] = {}

    def sample(row: dict) -> None:
        if row["update"] == 1:  # traced from here: tracing the imports and set-up would only cost time
            tracemalloc.start()  # Python's and NumPy's allocations (PyTorch's own are seen through its tensors)
        if row["update"] in (FIRST_SAMPLE, UPDATES):
            gc.collect()  # cyclic garbage is not held memory
            objects = gc.get_objects()  # those made since the run began (frozen_gc holds the older ones)
            tensors = sum(isinstance(obj, torch.Tensor) for obj in objects)
            samples[row["update"]] = (tensors, len(objects), tracemalloc.get_traced_memory()[0], len(trainer.history))
        if row["update"] == UPDATES:
            tracemalloc.stop()  # the run's end (its plot imports matplotlib) is not an update

    try:
        trainer = Trainer.new("ppo", cfg, tmp_path / "run", quiet=True)
        trainer.run(on_update=sample)
    finally:
        tracemalloc.stop()
    (tensors_before, objects_before, bytes_before, rows_before) = samples[FIRST_SAMPLE]
    (tensors_after, objects_after, bytes_after, rows_after) = samples[UPDATES]
    new_rows = rows_after - rows_before
    assert tensors_after == tensors_before, f"{tensors_after - tensors_before} tensors outlived their update"
    # A few objects of slack: caches that libraries fill lazily on first use (more or fewer depending on
    # which tests ran earlier in the process) are not per-update growth; a kept rollout adds dozens.
    assert objects_after - objects_before <= new_rows + 12, "objects beyond one metrics row per update are kept"
    grown = bytes_after - bytes_before
    assert grown <= new_rows * ROW_BYTES, f"{grown:,} bytes more over {new_rows} updates"


@pytest.mark.parametrize(("learner_name", "target_kl"), [("autograd", None), ("fused-mlp", None), ("autograd", 1e-4)])
def test_ppo_gathering_fewer_minibatches_at_once_takes_the_same_steps(monkeypatch, learner_name, target_kl):
    # A batch larger than GATHER_BYTES (Atari frames) is shuffled a few minibatches at a time, not every
    # epoch at once; what the learner is given must not change: the same minibatches, in the same order,
    # and the same epoch stopped early by target_kl.
    overrides = dict(CASES["ppo"], update_epochs=4, normalize_advantages=True, target_kl=target_kl)
    module, cfg, agent, rollouts = rollouts_and_agent("ppo", "Pendulum-v1", overrides)
    at_once_agent, _, at_once_metrics = train_with(learner_name, module, cfg, agent, rollouts)
    monkeypatch.setattr(ppo, "GATHER_BYTES", 1)  # one minibatch per gather
    apart_agent, _, apart_metrics = train_with(learner_name, module, cfg, agent, rollouts)
    for got, want in zip(apart_agent.parameters(), at_once_agent.parameters(), strict=True):
        assert torch.equal(got, want)
    assert apart_metrics == at_once_metrics
    if target_kl is not None:
        assert min(m["epochs"] for m in at_once_metrics) < 4  # the early stop happened
