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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from policygrad import encoders, heads, spaces
from policygrad.nets import mlp


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
    #: "discrete", "multi_discrete", "multi_binary" or "box" (:mod:`policygrad.heads`); "" derives it from ``discrete``.
    action_kind: str = ""
    action_nvec: tuple[int, ...] | None = None  # MultiDiscrete: the components' sizes
    action_start: tuple[int, ...] | None = None  # Discrete/MultiDiscrete ``start`` (None: 0)
    observation_space: dict[str, Any] | None = None  # JSON of a space seen flattened (None: a flat Box)
    masked: bool = False  # the env forbids actions by a mask (info["action_mask"] or action_masks())

    @property
    def kind(self) -> str:
        """The action head's kind."""
        return self.action_kind or ("discrete" if self.discrete else "box")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentSpec:
        data = dict(data)
        data["hidden_sizes"] = tuple(data["hidden_sizes"])
        for key in ("action_low", "action_high", "action_nvec", "action_start"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


class Agent(nn.Module):
    """Actor (and optional critic) MLPs over flat observations, behind one shared encoder where there are images.

    ``encoder`` (:mod:`policygrad.encoders`) is None for observations without images: the
    MLPs then take the flat observation as it is.
    """

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__()
        self.spec = spec
        space = spaces.from_json(spec.observation_space) if spec.observation_space is not None else None
        self.encoder = encoders.build(space)
        width = spec.obs_dim if self.encoder is None else self.encoder.out_features
        self.actor = mlp(width, spec.hidden_sizes, spec.action_dim, spec.activation, out_gain=0.01)
        self.critic = mlp(width, spec.hidden_sizes, 1, spec.activation, 1.0) if spec.critic else None
        if not spec.discrete:
            self.log_std = nn.Parameter(torch.full((spec.action_dim,), float(spec.init_log_std)))
        # Observation-normalisation statistics, so a loaded agent acts on raw observations.
        self.register_buffer("obs_mean", torch.zeros(spec.obs_dim, dtype=torch.float64))
        self.register_buffer("obs_var", torch.ones(spec.obs_dim, dtype=torch.float64))

    # ----- the distributions API (users, losses) -------------------------------------
    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """What the actor and critic take: the flat observations, or the encoder's features of them."""
        return obs if self.encoder is None else self.encoder(obs)

    def distribution(self, obs: torch.Tensor, action_mask: torch.Tensor | None = None) -> Any:
        """π_θ(·|obs) (:mod:`policygrad.heads`): a Categorical, independent categoricals or Bernoullis, or an
        Independent Normal for boxes. obs: (B, obs_dim); ``action_mask`` (B, width) bool forbids actions.
        """
        return self.policy(self.features(obs), action_mask)

    def policy(self, features: torch.Tensor, action_mask: torch.Tensor | None = None) -> Any:
        """π_θ from the encoder's features (:meth:`features`)."""
        spec, out = self.spec, heads.masked(self.actor(features), action_mask)
        return heads.distribution(spec.kind, out, getattr(self, "log_std", None), spec.action_nvec)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V_φ(obs): (B,). Raises if this agent has no critic."""
        if self.critic is None:
            raise RuntimeError("this agent has no critic (REINFORCE uses V ≡ 0)")
        return self.critic(self.features(obs)).squeeze(-1)

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor, action_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log-probs (B,), entropies (B,) and values (B,) or None, with gradients (under the action mask, if any)."""
        x = self.features(obs)  # once, for both networks
        dist = self.policy(x, action_mask)
        values = self.critic(x).squeeze(-1) if self.critic is not None else None
        return dist.log_prob(actions), dist.entropy(), values

    # ----- the rollout's hot path ----------------------------------------------------
    def sample(
        self, obs: torch.Tensor, noise: torch.Tensor, action_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Draw actions from pre-drawn noise: the same law as ``distribution(obs).sample()``.

        noise: (B,) uniforms in [0, 1) for discrete actions (inverse-CDF sampling), (B, K)
        uniforms for MultiDiscrete and MultiBinary, or (B, action_dim) standard normals for
        boxes (:func:`policygrad.heads.noise_shape`). Returns actions, log-probs, values.

        The rollout may draw the same law through a kernel's fused forward instead
        (:func:`policygrad.kernels.rollout_sampler`, equal up to float rounding).
        """
        x = self.features(obs)
        out = heads.masked(self.actor(x), action_mask)
        values = self.critic(x).squeeze(-1) if self.critic is not None else None
        spec, log_std = self.spec, getattr(self, "log_std", None)
        actions, log_probs = heads.sample(spec.kind, out, noise, log_std, spec.action_nvec, action_mask)
        return actions, log_probs, values

    def mode(self, obs: torch.Tensor, action_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The deterministic action: argmax for categoricals (among allowed actions), p ≥ ½ for Bernoullis, the mean
        for boxes."""
        out = heads.masked(self.actor(self.features(obs)), action_mask)
        return heads.mode(self.spec.kind, out, self.spec.action_nvec)

    def to_env_actions(self, actions: torch.Tensor | np.ndarray) -> np.ndarray:
        """Policy actions (a tensor or its numpy array) as the environment takes them (boxes clipped to bounds)."""
        array = actions.numpy() if isinstance(actions, torch.Tensor) else actions
        spec = self.spec
        if spec.kind == "box":
            return np.clip(array, spec.action_low, spec.action_high)
        return array + np.asarray(spec.action_start, dtype=array.dtype) if spec.action_start else array

    def normalize_observation(self, obs: np.ndarray) -> np.ndarray:
        """Apply the saved observation normalisation (as Gymnasium's NormalizeObservation does)."""
        if not self.spec.normalize_obs:
            return obs
        mean = self.obs_mean.numpy()
        var = self.obs_var.numpy()
        return (obs - mean) / np.sqrt(var + 1e-8)

    # ----- the public API --------------------------------------------------------------
    def act(self, obs: Any, deterministic: bool = True, action_mask: Any = None) -> Any:
        """Action(s) for raw observation(s): one observation → one action, a batch → a batch.

        Applies the observation normalisation the agent was trained with; continuous
        actions come back clipped to the action bounds. ``action_mask`` (bool, True = allowed,
        as the env reports it) restricts the choice to the allowed actions.
        """
        if self.spec.observation_space is not None:  # Dict, Discrete, images of any shape…: flattened as in training
            space = spaces.from_json(self.spec.observation_space)
            array = spaces.flatten_batch(space, obs)
            single = not spaces.is_batch(space, obs)
        else:
            array = np.asarray(obs, dtype=np.float64)
            single = array.ndim == 1
        batch = self.normalize_observation(array.reshape(-1, self.spec.obs_dim))
        with torch.inference_mode():
            obs_t = torch.as_tensor(batch, dtype=torch.float32)
            mask = None if action_mask is None else torch.as_tensor(np.asarray(action_mask, dtype=bool))
            mask = None if mask is None else mask.reshape(obs_t.shape[0], -1)
            if deterministic:
                actions = self.mode(obs_t, mask)
            else:
                actions = self.distribution(obs_t, mask).sample()
            env_actions = self.to_env_actions(actions)
        if single:
            return env_actions[0].item() if self.spec.kind == "discrete" else env_actions[0]
        return env_actions
