"""GRPO's loss family: policygrad's loss and gradient against TRL's GRPOTrainer on identical inputs.

For every ``loss_type`` × ``scale_rewards`` × ``importance_sampling_level`` that both have
(and with the KL term on and off, truncated responses masked or not, one or two
minibatches), the same rewards, groups, masks, log-probs, sampling-time ("old") log-probs
and reference log-probs go to

- TRL: the advantage lines of ``GRPOTrainer._generate_and_score_completions`` (inlined
  there, so reproduced here with TRL's own ``nanstd``) and then the real
  ``GRPOTrainer._compute_loss``, called on a trainer made with ``object.__new__`` that holds
  only the attributes the loss reads, and whose ``_get_per_token_logps_and_entropies``
  returns the given log-probs (a leaf tensor) instead of running a model;
- policygrad: ``build_rollout`` → ``grpo.advantages`` → ``minibatch_loss`` (the code a run
  uses), its scorer returning the same leaf tensor.

It asserts equal losses and equal gradients with respect to the log-probs to 1e-6
(float64) and prints the largest differences.

    pip install "trl>=1.16"   # the bench extra
    python benchmarks/lm_trl_parity.py
"""

from __future__ import annotations

import itertools
import sys
import types
from collections import defaultdict
from typing import Any

import torch

from policygrad.lm.algorithms import common, grpo
from policygrad.lm.generation import Samples
from policygrad.lm.losses import IMPORTANCE_SAMPLING_LEVELS, LOSS_TYPES
from policygrad.lm.rollout import build_rollout, ended_with_eos
from policygrad.lm.tasks import EOS, PAD

TOLERANCE = 1e-6
GROUPS, K, BUDGET = 3, 4, 6
SCALE_REWARDS = grpo.SCALE_REWARDS


def random_batch(seed: int) -> dict[str, torch.Tensor]:
    """Ragged responses (some cut at the budget without <eos>), rewards with one all-equal group, log-probs."""
    g = torch.Generator().manual_seed(seed)
    n = GROUPS * K
    lengths = torch.randint(1, BUDGET + 1, (n,), generator=g)
    lengths[:2] = BUDGET
    mask = torch.arange(BUDGET).unsqueeze(0) < lengths.unsqueeze(1)
    responses = torch.randint(4, 14, (n, BUDGET), generator=g)
    ends = torch.rand(n, generator=g) < 0.7  # the others are truncated: no <eos> at their last token
    responses[torch.arange(n), lengths - 1] = torch.where(ends, EOS, responses[torch.arange(n), lengths - 1])
    responses = torch.where(mask, responses, PAD)
    rewards = torch.rand(n, generator=g, dtype=torch.float64).round(decimals=1)
    rewards[K : 2 * K] = 0.5  # a group with no signal: std 0
    old = -torch.rand(n, BUDGET, generator=g, dtype=torch.float64) * 2 * mask
    log_probs = (old + 0.15 * torch.randn(n, BUDGET, generator=g, dtype=torch.float64)) * mask  # ratio ≠ 1
    ref = (old + 0.3 * torch.randn(n, BUDGET, generator=g, dtype=torch.float64)) * mask
    return {"responses": responses, "mask": mask, "rewards": rewards, "old": old, "log_probs": log_probs, "ref": ref}


# ----- TRL -------------------------------------------------------------------------------------
def trl_advantages(rewards: torch.Tensor, scale_rewards: str) -> torch.Tensor:
    """TRL 1.16 ``_generate_and_score_completions``, "sum_then_normalize" branch, line for line."""
    from trl.trainer.utils import nanstd

    mean_grouped_rewards = torch.nanmean(rewards.view(-1, K), dim=1).repeat_interleave(K, dim=0)
    if scale_rewards in ["group", "none"]:
        std_rewards = nanstd(rewards.view(-1, K), dim=1).repeat_interleave(K, dim=0)
    else:  # batch
        std_rewards = nanstd(rewards).expand_as(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return advantages


class _Accelerator:
    num_processes = 1

    @staticmethod
    def gather(x: torch.Tensor) -> torch.Tensor:
        return x

    reduce = gather_for_metrics = staticmethod(lambda x, reduction="sum": x)


def trl_trainer(
    loss_type: str, level: str, beta: float, epsilon: float, epsilon_high: float, steps_per_generation: int
) -> Any:
    """A ``GRPOTrainer`` made with ``object.__new__``: only the state ``_compute_loss`` reads, no model."""
    from trl import GRPOTrainer

    trainer = object.__new__(GRPOTrainer)
    args = types.SimpleNamespace(
        use_bias_correction_kl=False,
        delta=None,
        steps_per_generation=steps_per_generation,
        sapo_temperature_pos=1.0,
        sapo_temperature_neg=1.05,
    )
    state = {
        "args": args,
        "loss_type": loss_type,
        "importance_sampling_level": level,
        "beta": beta,
        "epsilon_low": epsilon,
        "epsilon_high": epsilon_high,
        "top_entropy_quantile": 1.0,
        "off_policy_mask_threshold": None,
        "use_vllm": False,
        "vllm_importance_sampling_correction": False,
        "use_liger_kernel": False,
        "aux_loss_enabled": False,
        "_entropy_bonus_enabled": False,
        "max_completion_length": BUDGET,
        "current_gradient_accumulation_steps": 1,
        "accelerator": _Accelerator(),
        "model": types.SimpleNamespace(training=True),
        "_metrics": {"train": defaultdict(list), "eval": defaultdict(list)},
    }
    for key, value in state.items():
        object.__setattr__(trainer, key, value)
    return trainer


def trl_loss(batch: dict[str, torch.Tensor], rows: torch.Tensor, setting: dict[str, Any]) -> tuple[float, torch.Tensor]:
    """TRL's loss on the responses ``rows`` and its gradient w.r.t. the log-probs of the whole batch."""
    log_probs = batch["log_probs"].clone().requires_grad_(True)
    mask = batch["mask"].long()
    if setting["mask_truncated"]:  # TRL: completion_mask * (~is_truncated), before num_items_in_batch is counted
        mask = mask * ended_with_eos(batch["responses"], batch["mask"]).unsqueeze(1).long()
    trainer = trl_trainer(
        setting["loss_type"],
        setting["level"],
        setting["beta"],
        setting["epsilon"],
        setting["epsilon_high"],
        setting["minibatches"],
    )
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (
        log_probs[rows],
        torch.zeros_like(log_probs[rows]),
        None,
    )
    inputs = {
        "prompt_ids": torch.ones(len(rows), 1, dtype=torch.long),
        "prompt_mask": torch.ones(len(rows), 1, dtype=torch.long),
        "completion_ids": batch["responses"][rows],
        "completion_mask": mask[rows],
        "advantages": trl_advantages(batch["rewards"], setting["scale_rewards"])[rows],
        "old_per_token_logps": batch["old"][rows],
        "ref_per_token_logps": batch["ref"][rows],
        "num_items_in_batch": mask.sum().to(torch.float64),
    }
    loss = trainer._compute_loss(None, inputs)
    loss.backward()
    return loss.item(), log_probs.grad


# ----- policygrad --------------------------------------------------------------------------------
def policygrad_loss(
    batch: dict[str, torch.Tensor], rows: torch.Tensor, setting: dict[str, Any]
) -> tuple[float, torch.Tensor]:
    """policygrad's GRPO loss on the responses ``rows``, as a run computes it, and its gradient."""
    log_probs = batch["log_probs"].clone().requires_grad_(True)
    cfg = grpo.Config(
        samples_per_prompt=K,
        prompts_per_update=GROUPS,
        loss_type=setting["loss_type"],
        scale_rewards=setting["scale_rewards"],
        importance_sampling_level=setting["level"],
        epsilon=setting["epsilon"],
        epsilon_high=setting["epsilon_high"],
        kl_in="loss",
        kl_coef=setting["beta"],
        kl_estimator="k3",
        mask_truncated_completions=setting["mask_truncated"],
        minibatches=setting["minibatches"],
    )
    samples = Samples(
        torch.ones(len(log_probs), 1, dtype=torch.long), batch["responses"], batch["old"], None, batch["mask"]
    )
    groups = torch.arange(GROUPS).repeat_interleave(K)
    rollout = build_rollout(samples, batch["rewards"], batch["ref"], groups, cfg.kl_coef, kl_in_reward=False)
    scores = types.SimpleNamespace(log_probs=log_probs[rows], entropy=torch.zeros_like(log_probs[rows]), values=None)
    original = common.score
    common.score = lambda *a, **k: scores
    try:
        loss, _ = common.minibatch_loss(
            None,
            rollout,
            rows,
            grpo.advantages(rollout, cfg),
            cfg,
            clip_coef=cfg.epsilon_low,
            clip_high=cfg.clip_high,
            step_tokens=common.loss_mask(rollout, cfg).sum().item() / cfg.minibatches,  # as optimise() passes it
        )
    finally:
        common.score = original
    loss.backward()
    return loss.item(), log_probs.grad


def settings() -> list[dict[str, Any]]:
    """Every loss_type × scale_rewards × importance_sampling_level, crossed with β, masking, clip and minibatches."""
    out = []
    for loss_type, scale, level in itertools.product(LOSS_TYPES, SCALE_REWARDS, IMPORTANCE_SAMPLING_LEVELS):
        for beta, mask_truncated, minibatches in itertools.product((0.0, 0.04), (False, True), (1, 2)):
            high = 5.0 if loss_type == "cispo" else 0.28
            out.append(
                {
                    "loss_type": loss_type,
                    "scale_rewards": scale,
                    "level": level,
                    "beta": beta,
                    "mask_truncated": mask_truncated,
                    "minibatches": minibatches,
                    "epsilon": 0.2 if level == "token" else 3e-2,
                    "epsilon_high": high if level == "token" or loss_type == "cispo" else 4e-2,
                }
            )
    return out


def compare(setting: dict[str, Any], seed: int = 0) -> tuple[float, float]:
    """Largest |loss difference| and |gradient difference| over the minibatches of one setting."""
    batch = random_batch(seed)
    worst_loss = worst_grad = 0.0
    for rows in torch.randperm(GROUPS * K, generator=torch.Generator().manual_seed(seed)).chunk(setting["minibatches"]):
        trl_value, trl_grad = trl_loss(batch, rows, setting)
        ours, our_grad = policygrad_loss(batch, rows, setting)
        worst_loss = max(worst_loss, abs(trl_value - ours))
        worst_grad = max(worst_grad, (trl_grad - our_grad).abs().max().item())
    return worst_loss, worst_grad


def main() -> int:
    import trl

    torch.set_default_dtype(torch.float64)
    print(f"TRL {trl.__version__}: {len(settings())} settings × 3 seeds, tolerance {TOLERANCE:g}")
    print(f"{'loss_type':10s} {'scale':6s} {'IS level':9s} {'max |Δloss|':>12s} {'max |Δgrad|':>12s}")
    failures = 0
    for key, group in itertools.groupby(settings(), key=lambda s: (s["loss_type"], s["scale_rewards"], s["level"])):
        results = [compare(s, seed) for s in group for seed in range(3)]
        loss_diff, grad_diff = max(r[0] for r in results), max(r[1] for r in results)
        ok = loss_diff <= TOLERANCE and grad_diff <= TOLERANCE
        failures += not ok
        print(
            f"{key[0]:10s} {key[1]:6s} {key[2]:9s} {loss_diff:12.2e} {grad_diff:12.2e}  {'ok' if ok else 'DIFFERENT'}"
        )
    print("all equal" if failures == 0 else f"{failures} combinations differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
