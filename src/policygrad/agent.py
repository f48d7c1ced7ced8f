"""The agent: an actor (the policy π_θ) and, from REINFORCE + baseline on, a critic V_φ.

Policies return ``torch.distributions`` objects for users and losses
(:meth:`Agent.distribution`); the rollout's hot loop uses :meth:`Agent.sample`, which
draws the same distribution from pre-drawn noise without building distribution objects.

Continuous actions: an Independent Normal with a state-independent log-std. Sampled
actions are stored unclipped (their log-probs are exact); they are clipped to the
action bounds in one place only, :func:`Agent.to_env_actions`, right before the
environment sees them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from policygrad.nets import mlp

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class AgentSpec:
    """Everything needed to rebuild an agent's architecture (saved beside its weights)."""

    obs_dim: int
    discrete: bool
    action_dim: int  # number of actions (discrete) or action vector size (continuous)
    hidden_sizes: tuple[int, ...]
    activation: str
    critic: bool
    init_log_std: float = 0.0
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    normalize_obs: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentSpec:
        data = dict(data)
        data["hidden_sizes"] = tuple(data["hidden_sizes"])
        for key in ("action_low", "action_high"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


class Agent(nn.Module):
    """Actor (and optional critic) MLPs over flat observations."""

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__()
        self.spec = spec
        self.actor = mlp(spec.obs_dim, spec.hidden_sizes, spec.action_dim, spec.activation, out_gain=0.01)
        self.critic = mlp(spec.obs_dim, spec.hidden_sizes, 1, spec.activation, 1.0) if spec.critic else None
        if not spec.discrete:
            self.log_std = nn.Parameter(torch.full((spec.action_dim,), float(spec.init_log_std)))
        # Observation-normalisation statistics, so a loaded agent acts on raw observations.
        self.register_buffer("obs_mean", torch.zeros(spec.obs_dim, dtype=torch.float64))
        self.register_buffer("obs_var", torch.ones(spec.obs_dim, dtype=torch.float64))

    # ----- the distributions API (users, losses) -------------------------------------
    def distribution(self, obs: torch.Tensor) -> Distribution:
        """π_θ(·|obs): a Categorical, or an Independent Normal for boxes. obs: (B, obs_dim)."""
        out = self.actor(obs)
        if self.spec.discrete:
            return Categorical(logits=out, validate_args=False)
        return Independent(Normal(out, self.log_std.exp().expand_as(out), validate_args=False), 1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V_φ(obs): (B,). Raises if this agent has no critic."""
        if self.critic is None:
            raise RuntimeError("this agent has no critic (REINFORCE uses V ≡ 0)")
        return self.critic(obs).squeeze(-1)

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log-probs (B,), entropies (B,) and values (B,) or None, with gradients."""
        dist = self.distribution(obs)
        values = self.value(obs) if self.critic is not None else None
        return dist.log_prob(actions), dist.entropy(), values

    # ----- the rollout's hot path ----------------------------------------------------
    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Draw actions from pre-drawn noise: the same law as ``distribution(obs).sample()``.

        noise: (B,) uniforms in [0, 1) for discrete actions (inverse-CDF sampling), or
        (B, action_dim) standard normals for boxes. Returns actions, log-probs, values.

        The rollout may draw the same law through a kernel's fused forward instead
        (:func:`policygrad.kernels.rollout_sampler`, equal up to float rounding).
        """
        out = self.actor(obs)
        values = self.critic(obs).squeeze(-1) if self.critic is not None else None
        if self.spec.discrete:
            log_probs_all = torch.log_softmax(out, dim=-1)
            cdf = log_probs_all.exp().cumsum(-1)
            actions = (cdf <= noise.unsqueeze(-1)).sum(-1).clamp_(max=self.spec.action_dim - 1)
            return actions, log_probs_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1), values
        log_std = self.log_std
        actions = out + log_std.exp() * noise
        log_probs = (-0.5 * noise.pow(2) - log_std - LOG_SQRT_2PI).sum(-1)
        return actions, log_probs, values

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action: argmax for discrete, the mean for boxes."""
        out = self.actor(obs)
        return out.argmax(-1) if self.spec.discrete else out

    def to_env_actions(self, actions: torch.Tensor | np.ndarray) -> np.ndarray:
        """Policy actions (a tensor or its numpy array) as the environment takes them (boxes clipped to bounds)."""
        array = actions.numpy() if isinstance(actions, torch.Tensor) else actions
        if self.spec.discrete:
            return array
        return np.clip(array, self.spec.action_low, self.spec.action_high)

    def normalize_observation(self, obs: np.ndarray) -> np.ndarray:
        """Apply the saved observation normalisation (as Gymnasium's NormalizeObservation does)."""
        if not self.spec.normalize_obs:
            return obs
        mean = self.obs_mean.numpy()
        var = self.obs_var.numpy()
        return (obs - mean) / np.sqrt(var + 1e-8)

    # ----- the public API --------------------------------------------------------------
    def act(self, obs: Any, deterministic: bool = True) -> Any:
        """Action(s) for raw observation(s): one observation → one action, a batch → a batch.

        Applies the observation normalisation the agent was trained with; continuous
        actions come back clipped to the action bounds.
        """
        array = np.asarray(obs, dtype=np.float64)
        single = array.ndim == 1
        batch = self.normalize_observation(array.reshape(-1, self.spec.obs_dim))
        with torch.inference_mode():
            obs_t = torch.as_tensor(batch, dtype=torch.float32)
            if deterministic:
                actions = self.mode(obs_t)
            else:
                actions = self.distribution(obs_t).sample()
            env_actions = self.to_env_actions(actions)
        if single:
            return env_actions[0].item() if self.spec.discrete else env_actions[0]
        return env_actions
