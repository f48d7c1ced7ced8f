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
from policygrad.nets import mlp, torch_default_init
from policygrad.recurrent import RecurrentCore


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
    policy: str = "mlp"  # "lstm": a recurrent core between the encoder and the heads (policygrad.recurrent)
    lstm_hidden_size: int = 64
    clip_obs: float | None = None  # normalised observations clipped to ±clip_obs (None: not clipped)
    ortho_init: bool = True  # False: PyTorch's default initialisation of the linear and convolution layers

    @property
    def kind(self) -> str:
        """The action head's kind."""
        return self.action_kind or ("discrete" if self.discrete else "box")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def for_run(cls, info: Any, cfg: Any, critic: bool, masked: bool) -> AgentSpec:
        """The agent a run trains: the spaces of its environment (``policygrad.envs.EnvInfo``) and the config's network.

        ``masked``: the agent uses the environment's action masks.
        """
        return cls(
            obs_dim=info.obs_dim,
            discrete=info.discrete,
            action_dim=info.action_dim,
            hidden_sizes=cfg.hidden_sizes,
            activation=cfg.activation,
            critic=critic,
            init_log_std=cfg.init_log_std,
            action_low=info.action_low,
            action_high=info.action_high,
            normalize_obs=cfg.normalize_obs,
            action_kind=info.action_kind,
            action_nvec=info.action_nvec,
            action_start=info.action_start,
            observation_space=info.observation_space,
            masked=masked,
            policy=cfg.policy,
            lstm_hidden_size=cfg.lstm_hidden_size,
            clip_obs=cfg.clip_obs if cfg.normalize_obs else None,
            ortho_init=cfg.ortho_init,
        )

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
    MLPs then take the flat observation as it is. ``core`` (:mod:`policygrad.recurrent`) is None
    for ``policy="mlp"``; with ``policy="lstm"`` an LSTM per network sits between the encoder and
    its MLP, and the agent steps with a state (:meth:`step`, :meth:`evaluate` with ``memory``).
    """

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__()
        self.spec = spec
        space = spaces.from_json(spec.observation_space) if spec.observation_space is not None else None
        self.encoder = encoders.build(space)
        width = spec.obs_dim if self.encoder is None else self.encoder.out_features
        self.core = RecurrentCore(width, spec.lstm_hidden_size, spec.critic) if spec.policy == "lstm" else None
        width = width if self.core is None else spec.lstm_hidden_size
        #: The state ``act`` carries between calls (policy=lstm); None: start afresh.
        self.act_state: torch.Tensor | None = None
        self.actor = mlp(width, spec.hidden_sizes, spec.action_dim, spec.activation, out_gain=0.01)
        self.critic = mlp(width, spec.hidden_sizes, 1, spec.activation, 1.0) if spec.critic else None
        if not spec.ortho_init:
            torch_default_init(self)
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
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        memory: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log-probs (B,), entropies (B,) and values (B,) or None, with gradients (under the action mask, if any).

        A recurrent agent takes whole sequences: obs (M, T, obs_dim), actions (M, T, ...) and
        ``memory = (initial_state (M, rows, hidden), episode_starts (M, T) bool)``, replayed
        through the core (:meth:`policygrad.recurrent.RecurrentCore.replay`); results are (M, T).
        """
        x = critic_x = self.features(obs)  # once, for both networks
        if self.core is not None:
            if memory is None:
                raise ValueError("a recurrent agent evaluates whole sequences: pass memory=(initial_state, starts)")
            x, critic_x = self.core.replay(x, *memory)
        dist = self.policy(x, action_mask)
        values = self.critic(critic_x).squeeze(-1) if self.critic is not None else None
        return dist.log_prob(actions), dist.entropy(), values

    # ----- the recurrent step (policy=lstm) --------------------------------------------
    @property
    def recurrent(self) -> bool:
        """Whether the agent carries a state from step to step (``policy="lstm"``)."""
        return self.core is not None

    def initial_state(self, batch: int) -> torch.Tensor:
        """The state at an episode's start for ``batch`` envs: zeros (batch, rows, lstm_hidden_size)."""
        assert self.core is not None
        return self.core.initial_state(batch)

    def step(
        self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """One step of a recurrent agent: the actor's outputs (B, width), values (B,) or None, the next state.

        ``starts`` (B,) bool zeroes the state of the envs whose observation begins an episode.
        """
        assert self.core is not None
        x, critic_x, state = self.core.step(self.features(obs), state, starts)
        values = self.critic(critic_x).squeeze(-1) if self.critic is not None else None
        return self.actor(x), values, state

    def sample_step(
        self,
        obs: torch.Tensor,
        noise: torch.Tensor,
        state: torch.Tensor,
        starts: torch.Tensor | None,
        action_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`sample` for a recurrent agent: actions, log-probs, values (or None) and the next state."""
        out, values, state = self.step(obs, state, starts)
        spec, log_std = self.spec, getattr(self, "log_std", None)
        out = heads.masked(out, action_mask)
        actions, log_probs = heads.sample(spec.kind, out, noise, log_std, spec.action_nvec, action_mask)
        return actions, log_probs, values, state

    def mode_step(
        self, obs: torch.Tensor, state: torch.Tensor, action_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`mode` for a recurrent agent: the deterministic actions and the next state."""
        out, _, state = self.step(obs, state)
        return heads.mode(self.spec.kind, heads.masked(out, action_mask), self.spec.action_nvec), state

    def critic_parameters(self) -> list[nn.Parameter]:
        """The critic's parameters (its MLP, and its LSTM where there is one): clipped apart from the actor's."""
        if self.critic is None:
            return []
        lstm = self.core.critic_lstm if self.core is not None else None
        return [*self.critic.parameters(), *(lstm.parameters() if lstm is not None else ())]

    def reset_memory(self) -> None:
        """Forget the state :meth:`act` carries: the next call starts an episode (policy=lstm)."""
        self.act_state = None

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
        normalized = (obs - mean) / np.sqrt(var + 1e-8)
        clip = self.spec.clip_obs  # as the training envs clipped them (policygrad.envs.ClippedNormalizeObservation)
        return normalized if clip is None else np.clip(normalized, -clip, clip)

    # ----- the public API --------------------------------------------------------------
    def act(self, obs: Any, deterministic: bool = True, action_mask: Any = None, episode_start: Any = False) -> Any:
        """Action(s) for raw observation(s): one observation → one action, a batch → a batch.

        Applies the observation normalisation the agent was trained with; continuous
        actions come back clipped to the action bounds. ``action_mask`` (bool, True = allowed,
        as the env reports it) restricts the choice to the allowed actions.

        A recurrent agent (policy=lstm) remembers: each call continues the episode of the
        previous one. ``episode_start=True`` (or one bool per env of a batch) starts a new
        episode from a zero state; so do :meth:`reset_memory` and a change of batch size.
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
            if self.core is not None:
                spec, out = self.spec, heads.masked(self._remember(obs_t, episode_start), mask)
                dist = heads.distribution(spec.kind, out, getattr(self, "log_std", None), spec.action_nvec)
                actions = heads.mode(spec.kind, out, spec.action_nvec) if deterministic else dist.sample()
            elif deterministic:
                actions = self.mode(obs_t, mask)
            else:
                actions = self.distribution(obs_t, mask).sample()
            env_actions = self.to_env_actions(actions)
        if single:
            return env_actions[0].item() if self.spec.kind == "discrete" else env_actions[0]
        return env_actions

    def _remember(self, obs: torch.Tensor, episode_start: Any) -> torch.Tensor:
        """The actor's outputs for ``obs`` (B, obs_dim) from the state :meth:`act` carries, which this step advances."""
        batch = obs.shape[0]
        if self.act_state is None or self.act_state.shape[0] != batch:
            self.act_state = self.initial_state(batch)
        starts = torch.from_numpy(np.broadcast_to(np.asarray(episode_start, dtype=bool), (batch,)).copy())
        out, _, self.act_state = self.step(obs, self.act_state, starts)
        return out
