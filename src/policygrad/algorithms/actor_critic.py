"""Actor-Critic: the critic bootstraps, so updates no longer wait for episodes to end.

Δ from REINFORCE + baseline: the advantage is the one-step TD error
A_t = r_t + γ V(s_{t+1}) − V(s_t) (``gae`` with λ = 0), and V is regressed on the TD
target r_t + γ V(s_{t+1}). That needs only one transition, so it updates every
``rollout_steps`` steps (1: every step) from a single environment, trading the Monte-
Carlo return's variance for the critic's bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.algorithms.baseline import BaselineConfig
from policygrad.algorithms.common import gae_advantages, one_step_update
from policygrad.config import positive, setting
from policygrad.learners import Learner
from policygrad.rollout import Rollout

COLLECT = "steps"
USES_CRITIC = True


@dataclass(frozen=True)
class ActorCriticConfig(BaselineConfig):
    """One-step TD actor-critic on a single environment."""

    num_envs: int = setting(1, positive, "> 0", "environments (1: the classic single-env actor-critic)")
    rollout_steps: int = setting(1, positive, "> 0", "steps between updates")


def advantages(rollout: Rollout, cfg: ActorCriticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The TD error r_t + γ V(s_{t+1}) − V(s_t): GAE with λ = 0."""
    return gae_advantages(rollout, cfg.gamma, 0.0)


def update(learner: Learner, rollout: Rollout, cfg: ActorCriticConfig, update_index: int) -> dict[str, float]:
    """One step with the TD error as advantage, V regressed on the TD target."""
    return one_step_update(learner, rollout, cfg, advantages, vf_coef=cfg.vf_coef)


Config = ActorCriticConfig
