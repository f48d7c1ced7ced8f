"""REINFORCE + baseline: subtract a learned state value from the return.

Δ from REINFORCE: a critic V_φ(s), regressed on G_t, and the advantage
A_t = G_t − V_φ(s_t) — REINFORCE's own ``advantages`` (GAE with λ = 1), now with the
critic's values stored in the rollout. Any b(s) that does not depend on the action
leaves the update's expectation unchanged, since E[∇log π(a|s)] = 0; a good one (V)
removes most of its variance. Still complete episodes only.
"""

from __future__ import annotations

from dataclasses import dataclass

from policygrad.algorithms.common import one_step_update
from policygrad.algorithms.reinforce import ReinforceConfig, advantages
from policygrad.config import non_negative, setting
from policygrad.learners import Learner
from policygrad.rollout import Rollout

COLLECT = "episodes"
USES_CRITIC = True


@dataclass(frozen=True)
class BaselineConfig(ReinforceConfig):
    """REINFORCE + a learned baseline V(s)."""

    vf_coef: float = setting(0.5, non_negative, ">= 0", "weight of the value (baseline) loss")


def update(learner: Learner, rollout: Rollout, cfg: BaselineConfig, update_index: int) -> dict[str, float]:
    """One step: policy gradient with A = G − V(s), and V regressed on G."""
    return one_step_update(learner, rollout, cfg, advantages, vf_coef=cfg.vf_coef)


Config = BaselineConfig
__all__ = ["BaselineConfig", "Config", "advantages", "update"]
