"""Sampling responses on Ray workers: ``policygrad lm train --backend ray``.

Each worker is a Ray actor holding a copy of the policy model and, per update, a
contiguous shard of the batch's responses (rows of the repeated prompts). The learner
puts the weights in the object store once per update (``ray.put``), every worker runs
:func:`~policygrad.lm.generation.generate` on its rows with their pre-drawn uniforms,
and the learner concatenates the shards in row order. Scoring under the reference, the
rewards and the update stay on the learner.

Why the result equals ``--backend local`` bit for bit: the prompts and every sampling
uniform are drawn on the learner from a generator keyed by (seed, update), so a row's
response depends only on its own prompt and uniforms; and the model computes each row
of a batch with the same arithmetic whatever the batch's height, provided the height
is at least ``MIN_SHARD`` (one-thread CPU matrix kernels switch to other code paths,
with another summation order, for 1–3 rows). Shards are therefore kept at
``MIN_SHARD`` rows or more, and ``tests/test_lm_ray.py`` checks the equality.

Sampling is stateless, so a worker that dies or hangs (with ``--max-worker-restarts``)
is simply recreated and the whole batch sampled again: the same rows, the same data.
"""

from __future__ import annotations

from typing import Any

import torch

from policygrad.distributed.ray_workers import UsesWorkerGroup, WorkerGroup, ready_info, to_arrays, to_tensors
from policygrad.distributed.shards import shard_ranges
from policygrad.errors import PolicygradError
from policygrad.lm.generation import Samples, generate

#: Fewest responses a worker samples per update (see the module docstring).
MIN_SHARD = 4


class SamplingWorker:
    """A rollout worker (run as a Ray actor): a copy of the policy model that samples rows of a batch."""

    def __init__(self, model: torch.nn.Module, threads: int) -> None:
        torch.set_num_threads(threads)  # the learner's thread count: the same kernels
        self.model = model

    def ready(self) -> dict[str, Any]:
        return ready_info()

    def sample(
        self,
        weights: dict[str, Any],
        prompts: torch.Tensor,
        uniforms: torch.Tensor,
        max_new_tokens: int,
        stop_at_eos: bool,
    ) -> dict[str, Any]:
        self.model.load_state_dict(to_tensors(weights))
        samples = generate(self.model, prompts, max_new_tokens, uniforms, stop_at_eos)
        return to_arrays(vars(samples))


def check_layout(batch_size: int, workers: int) -> None:
    """Refuse, with one clear line, a split of the batch the workers cannot sample exactly."""
    if workers * MIN_SHARD > batch_size:
        raise PolicygradError(
            f"--workers {workers} would sample fewer than {MIN_SHARD} responses each (batch of {batch_size} = "
            "prompts_per_update x samples_per_prompt), and results would then differ from --backend local in the "
            f"last bits; use at most {max(1, batch_size // MIN_SHARD)} workers or a larger batch"
        )


class RaySampler(UsesWorkerGroup):
    """``generate`` for the learner, run by Ray workers on contiguous shards of the batch.

    Config fields used: ``batch_size``, ``threads``, ``workers``, ``ray_address``,
    ``worker_cpus``, ``rollout_timeout``, ``max_worker_restarts``.
    """

    def __init__(self, policy: torch.nn.Module, cfg: Any) -> None:
        check_layout(cfg.batch_size, cfg.workers)
        self.policy = policy
        self.shards = shard_ranges(cfg.batch_size, cfg.workers)
        self.group = WorkerGroup(
            SamplingWorker,
            self.shards,
            lambda _k: (self.policy, cfg.threads),
            cfg,
            unit="responses",
            resume_command="policygrad lm resume RUN_DIR",
        )

    def generate(
        self, prompts: torch.Tensor, max_new_tokens: int, uniforms: torch.Tensor, stop_at_eos: bool = True
    ) -> Samples:
        """The same as :func:`~policygrad.lm.generation.generate` with the current policy, sampled by the workers."""
        if prompts.shape[0] != self.shards[-1].stop:
            raise ValueError(f"expected a batch of {self.shards[-1].stop} prompts, got {prompts.shape[0]}")
        group = self.group
        weights = group.ray.put(to_arrays(self.policy.state_dict()))  # one broadcast per update
        args = [
            (weights, prompts[s.start : s.stop], uniforms[s.start : s.stop], max_new_tokens, stop_at_eos)
            for s in self.shards
        ]
        # Nothing to restore after recreating a worker: sampling keeps no state between updates.
        parts = [to_tensors(r) for r in group.call_all_recovering("sample", args, lambda _fault: None)]
        values = None if parts[0]["values"] is None else torch.cat([p["values"] for p in parts])
        return Samples(
            prompts=prompts,
            responses=torch.cat([p["responses"] for p in parts]),
            log_probs=torch.cat([p["log_probs"] for p in parts]),
            values=values,
            mask=torch.cat([p["mask"] for p in parts]),
        )
