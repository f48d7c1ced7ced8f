"""The settings every token algorithm shares, validated with the same messages as the Gymnasium configs."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from typing import Any

from policygrad.config import RolloutBackendOptions, non_negative, positive, positive_or_none, setting, validate_fields
from policygrad.errors import PolicygradError
from policygrad.lm.head import HEAD_PATHS
from policygrad.lm.losses import IMPORTANCE_SAMPLING_LEVELS, LOSS_TYPES, REDUCTIONS, loss_type_reduction


def _kl_place(v: Any) -> bool:
    return v in ("reward", "loss")


def _reduction(v: Any) -> bool:
    return v in REDUCTIONS


def _loss_type(v: Any) -> bool:
    return v == "none" or v in LOSS_TYPES


@dataclass(frozen=True)
class LMTrainConfig(RolloutBackendOptions):
    """Settings every token algorithm shares: the task, the batch, the optimiser, the KL penalty, logging.

    Each algorithm's config extends the previous step's (REINFORCE → RLOO → GRPO → PPO).
    """

    task: str = setting("sum", help="task: target, sum or sort")
    seed: int = setting(0, non_negative, ">= 0", "seed of every random source")
    updates: int = setting(1000, positive, "> 0", "policy updates to run")
    max_train_seconds: float | None = setting(
        180.0,
        lambda v: v is None or v > 0,
        "> 0 or none",
        "also stop after this many seconds, counting the reference's pretraining when the run does it (none: off)",
    )
    prompts_per_update: int = setting(64, positive, "> 0", "distinct prompts sampled per update")
    samples_per_prompt: int = setting(1, positive, "> 0", "responses sampled per prompt (K, the group size)")
    learning_rate: float = setting(1e-3, positive, "> 0", "Adam learning rate (peak)")
    anneal_lr: bool = setting(
        True, help="decay the learning rate linearly to 10 % over the budget (updates or time, whichever is nearer)"
    )
    max_grad_norm: float = setting(1.0, non_negative, ">= 0", "gradient-norm clipping (0: off)")
    kl_coef: float = setting(0.03, non_negative, ">= 0", "β, weight of the KL penalty to the reference")
    kl_in: str = setting("reward", _kl_place, "reward or loss", "where the KL penalty goes")
    kl_estimator: str = setting("k3", lambda v: v in ("k1", "k3"), "k1 or k3", "KL estimator when kl_in = loss")
    loss_reduction: str = setting("token-mean", _reduction, ", ".join(REDUCTIONS), "how token losses are aggregated")
    loss_type: str = setting(
        "none",
        _loss_type,
        ", ".join(LOSS_TYPES) + " or none",
        "TRL's loss_type: the aggregation (and cispo's surrogate) by name; none: loss_reduction decides",
    )
    sapo_temperature_pos: float = setting(1.0, positive, "> 0", "SAPO's gate temperature where A > 0")
    sapo_temperature_neg: float = setting(1.05, positive, "> 0", "SAPO's gate temperature where A <= 0")
    importance_sampling_level: str = setting(
        "token",
        lambda v: v in IMPORTANCE_SAMPLING_LEVELS,
        "token or sequence",
        "importance ratio per token, or GSPO's one length-normalised ratio per response",
    )
    mask_truncated_completions: bool = setting(
        False, help="leave responses cut at the budget without <eos> out of the loss (DAPO)"
    )
    soft_punish_cache: int = setting(
        0,
        non_negative,
        ">= 0",
        "DAPO's overlong penalty: the last this-many tokens of the budget cost up to −1 reward (0: off)",
    )
    dynamic_sampling: bool = setting(
        False, help="DAPO: drop groups whose rewards are all equal and sample new prompts to refill the batch"
    )
    max_sampling_rounds: int = setting(4, positive, "> 0", "sampling rounds dynamic sampling may take per update")
    ent_coef: float = setting(0.0, non_negative, ">= 0", "entropy bonus coefficient")
    checkpoint_every: int = setting(100, positive, "> 0", "updates between checkpoints")
    keep_checkpoints: int = setting(3, positive, "> 0", "checkpoints kept on disk")
    eval_prompts: int = setting(512, positive, "> 0", "prompts sampled for the final evaluation")
    threads: int = setting(1, positive, "> 0", "torch CPU threads (1 is fastest for the small model)")
    lora_rank: int = setting(
        0,
        non_negative,
        ">= 0",
        "train LoRA adapters of this rank (peft) on a Hugging Face policy instead of all its weights (0: all weights)",
    )
    lora_alpha: float | None = setting(
        None, positive_or_none, "> 0 or none", "LoRA's α: the adapters are scaled by α / rank (none: α = rank)"
    )
    head_path: str = setting(
        "auto",
        lambda v: v in HEAD_PATHS,
        ", ".join(HEAD_PATHS),
        "the LM head: chunked (blocks of rows, no (N·T, V) logits), full logits, or auto (chunked from 1,024 tokens)",
    )

    def __post_init__(self) -> None:
        validate_fields(self)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; algorithms override and call super()."""
        if self.loss_type != "none" and self.loss_reduction != "token-mean":
            raise PolicygradError(
                f"loss_type = {self.loss_type} sets the aggregation itself; leave loss_reduction at its default"
            )
        if self.dynamic_sampling and self.samples_per_prompt < 2:
            raise PolicygradError("dynamic_sampling needs groups: set samples_per_prompt >= 2")
        if self.lora_rank and importlib.util.find_spec("peft") is None:
            raise PolicygradError("lora_rank needs peft, in the optional extra: pip install 'policygrad[hf]'")
        if self.backend == "ray":  # refused now, not after pretraining a reference
            from policygrad.lm.ray_sampling import check_layout

            if importlib.util.find_spec("ray") is None:
                raise PolicygradError("--backend ray needs Ray, an optional extra: pip install 'policygrad[ray]'")
            check_layout(self.batch_size, self.workers)

    @property
    def reduction(self) -> str:
        """The aggregation of token losses: ``loss_type``'s when set, else ``loss_reduction``."""
        return loss_type_reduction(self.loss_type) if self.loss_type != "none" else self.loss_reduction

    @property
    def batch_size(self) -> int:
        """Responses per update, N = prompts × K."""
        return self.prompts_per_update * self.samples_per_prompt

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
