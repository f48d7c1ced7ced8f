"""A finite MDP with a tabular softmax policy, and its exact V, Q, A, J and ∇J.

Everything is linear algebra in float64 torch: the policy's transition matrix P_π and
reward vector r_π give V = (I − γ P_π)⁻¹ r_π, and ∇J comes from autograd through that
solve. These are the ground truth the sampled estimators are checked against.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from policygrad.errors import PolicygradError

ArrayLike = Any  # numpy array, torch tensor, or nested lists
RewardNoise = Literal["none", "gaussian", "bernoulli"]

_TOLERANCE = 1e-6


def as_float64(x: ArrayLike) -> torch.Tensor:
    """A float64 torch tensor from numpy, torch or lists (torch inputs keep their autograd graph)."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def like_input(result: torch.Tensor, reference: ArrayLike) -> ArrayLike:
    """Return ``result`` as a torch tensor if ``reference`` is one, else as a numpy array."""
    if isinstance(reference, torch.Tensor):
        return result
    return result.detach().numpy()


class TabularMDP:
    r"""A finite MDP (S states, A actions) with a tabular softmax policy.

    ==============  =========  =========  ==============================================
    argument        symbol     shape      meaning
    ==============  =========  =========  ==============================================
    transitions     P          (S, A, S)  P[s, a, s'] = Pr(s' | s, a); rows sum to 1
    rewards         R          (S, A)     expected reward of taking a in s
    initial         μ₀         (S,)       start-state distribution; sums to 1
    gamma           γ          scalar     discount in (0, 1]
    observations    o(s)       (S,) int   optional: what the policy sees in each state
    ==============  =========  =========  ==============================================

    Terminal states are absorbing with zero reward: a state whose every action returns
    to itself with probability 1 and reward 0. With γ = 1 every softmax policy must
    terminate, i.e. a terminal state must be reachable from every state.

    The policy is π(a|s) = softmax(θ[o(s)])_a with logits ``theta`` of shape (O, A).
    By default o(s) = s, so O = S and θ is (S, A). Mapping several states to one
    observation makes them indistinguishable to the policy (state aliasing), which
    is what makes the best policy of the short corridor stochastic.

    Sampling noise (used only by :func:`policygrad.exact.sampling.sample_episodes`):
    ``reward_noise`` "gaussian" adds N(0, reward_std²) to R[s, a]; "bernoulli" draws
    1 with probability R[s, a] (which must then lie in [0, 1]) and 0 otherwise.

    Inputs may be numpy arrays or torch tensors. Methods taking ``theta`` return torch
    tensors (float64, differentiable in ``theta``) when ``theta`` is a torch tensor,
    and numpy arrays otherwise; :meth:`objective` returns a float. A batch of logits
    (..., O, A) gets batched answers (..., S), (..., S, A), and J of shape (...,):
    many independent learners in one call.
    """

    def __init__(
        self,
        transitions: ArrayLike,
        rewards: ArrayLike,
        initial: ArrayLike,
        gamma: float,
        *,
        observations: ArrayLike | None = None,
        reward_noise: RewardNoise = "none",
        reward_std: float = 0.0,
        action_names: list[str] | None = None,
    ) -> None:
        self.P = as_float64(transitions).detach()
        self.R = as_float64(rewards).detach()
        self.mu0 = as_float64(initial).detach()
        self.gamma = float(gamma)
        self._validate_shapes()
        S = self.num_states
        if observations is None:
            self.obs_index = torch.arange(S)
        else:
            self.obs_index = torch.as_tensor(np.asarray(observations), dtype=torch.long).reshape(-1)
        self.reward_noise = reward_noise
        self.reward_std = float(reward_std)
        self.action_names = (
            list(action_names) if action_names is not None else [str(a) for a in range(self.num_actions)]
        )
        self._validate_rest()
        absorbing = (self.P.diagonal(dim1=0, dim2=2).T > 1.0 - _TOLERANCE).all(-1)  # P[s, a, s] = 1 for all a
        self.terminal = absorbing & (self.R == 0).all(-1)
        # Terminal rows are zeroed so (I − γ P_π) stays invertible at γ = 1; V(terminal) = 0 either way.
        self.P_live = self.P * (~self.terminal).to(torch.float64)[:, None, None]
        if self.gamma == 1.0:
            self._check_termination()

    # ----- validation ------------------------------------------------------------------
    def _validate_shapes(self) -> None:
        P, R, mu0 = self.P, self.R, self.mu0
        if P.ndim != 3 or P.shape[0] != P.shape[2] or P.shape[0] == 0 or P.shape[1] == 0:
            raise PolicygradError(f"transitions must have shape (S, A, S), got {tuple(P.shape)}")
        S, A = P.shape[0], P.shape[1]
        if tuple(R.shape) != (S, A):
            raise PolicygradError(f"rewards must have shape (S, A) = ({S}, {A}), got {tuple(R.shape)}")
        if tuple(mu0.shape) != (S,):
            raise PolicygradError(f"initial must have shape (S,) = ({S},), got {tuple(mu0.shape)}")
        for name, x in (("transitions", P), ("rewards", R), ("initial", mu0)):
            if not torch.isfinite(x).all():
                raise PolicygradError(f"{name} must be finite (found NaN or inf)")
        if (P < 0).any():
            s, a, t = (int(i) for i in torch.nonzero(P < 0)[0])
            raise PolicygradError(f"transitions must be non-negative, but P[{s}, {a}, {t}] = {P[s, a, t].item():g}")
        sums = P.sum(-1)
        bad = (sums - 1.0).abs() > _TOLERANCE
        if bad.any():
            s, a = (int(i) for i in torch.nonzero(bad)[0])
            raise PolicygradError(f"transitions[{s}, {a}, :] must sum to 1, but sums to {sums[s, a].item():g}")
        if (mu0 < 0).any() or abs(mu0.sum().item() - 1.0) > _TOLERANCE:
            raise PolicygradError(f"initial must be a probability vector (non-negative, sum 1); sums to {mu0.sum():g}")
        if not 0.0 < self.gamma <= 1.0:
            raise PolicygradError(f"gamma must be in (0, 1], got {self.gamma:g}")

    def _validate_rest(self) -> None:
        S = self.num_states
        if tuple(self.obs_index.shape) != (S,) or (self.obs_index < 0).any():
            raise PolicygradError(f"observations must be {S} non-negative integers (one per state)")
        if self.reward_noise not in ("none", "gaussian", "bernoulli"):
            raise PolicygradError(f"reward_noise must be 'none', 'gaussian' or 'bernoulli', got {self.reward_noise!r}")
        if not (np.isfinite(self.reward_std) and self.reward_std >= 0):
            raise PolicygradError(f"reward_std must be finite and >= 0, got {self.reward_std:g}")
        if self.reward_noise == "bernoulli" and ((self.R < 0) | (self.R > 1)).any():
            raise PolicygradError("bernoulli reward noise needs every expected reward in [0, 1]")
        if len(self.action_names) != self.num_actions:
            raise PolicygradError(f"action_names must name {self.num_actions} actions, got {len(self.action_names)}")

    def _check_termination(self) -> None:
        """γ = 1: from every state some terminal state must be reachable (then every softmax policy terminates)."""
        reach = (self.P.sum(1) > 0) | torch.eye(self.num_states, dtype=torch.bool)  # any action leads s → s'
        reaches_terminal = self.terminal.clone()
        for _ in range(self.num_states):
            reaches_terminal = reaches_terminal | (reach & reaches_terminal[None, :]).any(-1)
        stuck = torch.nonzero(~reaches_terminal).flatten().tolist()
        if stuck:
            shown = ", ".join(map(str, stuck[:5])) + (", …" if len(stuck) > 5 else "")
            raise PolicygradError(
                f"gamma = 1 needs every policy to terminate, but no terminal state is reachable from state(s) {shown}; "
                "use gamma < 1 or add an absorbing zero-reward terminal state"
            )

    # ----- sizes -----------------------------------------------------------------------
    @property
    def num_states(self) -> int:
        """S, including terminal states."""
        return self.P.shape[0]

    @property
    def num_actions(self) -> int:
        """A."""
        return self.P.shape[1]

    @property
    def num_observations(self) -> int:
        """O: the number of rows of ``theta`` (S unless states are aliased)."""
        return int(self.obs_index.max().item()) + 1

    @property
    def theta_shape(self) -> tuple[int, int]:
        """(O, A), the shape of the policy logits."""
        return (self.num_observations, self.num_actions)

    def zeros(self) -> np.ndarray:
        """Logits of the uniform policy, shape (O, A)."""
        return np.zeros(self.theta_shape)

    # ----- exact quantities (torch, differentiable) -------------------------------------
    def _theta(self, theta: ArrayLike) -> torch.Tensor:
        theta_t = as_float64(theta)
        if theta_t.ndim < 2 or tuple(theta_t.shape[-2:]) != self.theta_shape:
            raise PolicygradError(f"theta must have shape (O, A) = {self.theta_shape}, got {tuple(theta_t.shape)}")
        return theta_t

    def _solve_matrix(self, pi: torch.Tensor) -> torch.Tensor:
        """I − γ P_π, with P_π[s, s'] = Σ_a π(a|s) P[s, a, s']: (..., S, S)."""
        P_pi = torch.einsum("...sa,sat->...st", pi, self.P_live)
        return torch.eye(self.num_states, dtype=torch.float64) - self.gamma * P_pi

    def policy_t(self, theta: ArrayLike) -> torch.Tensor:
        """π(a|s) = softmax(θ[o(s)]): (S, A), differentiable."""
        return torch.softmax(self._theta(theta)[..., self.obs_index, :], dim=-1)

    def values_t(self, theta: ArrayLike) -> torch.Tensor:
        r"""V^π = (I − γ P_π)⁻¹ r_π, shape (S,), with r_π[s] = Σ_a π(a|s) R[s, a]."""
        pi = self.policy_t(theta)
        r_pi = (pi * self.R).sum(-1)
        return torch.linalg.solve(self._solve_matrix(pi), r_pi.unsqueeze(-1)).squeeze(-1)

    def q_values_t(self, theta: ArrayLike) -> torch.Tensor:
        """Q^π(s, a) = R[s, a] + γ Σ_s' P[s, a, s'] V^π(s'), shape (S, A)."""
        return self.R + self.gamma * torch.einsum("sat,...t->...sa", self.P_live, self.values_t(theta))

    def objective_t(self, theta: ArrayLike) -> torch.Tensor:
        """J(θ) = μ₀ · V^π, a 0-d tensor (differentiable)."""
        return (self.values_t(theta) * self.mu0).sum(-1)

    def visitation_t(self, theta: ArrayLike) -> torch.Tensor:
        r"""Discounted visitation d^π(s) = Σ_t γ^t Pr(s_t = s) = [μ₀ᵀ (I − γ P_π)⁻¹](s), (S,); 0 if terminal."""
        matrix = self._solve_matrix(self.policy_t(theta))
        visits = torch.linalg.solve(matrix.mT, self.mu0.expand(*matrix.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return visits * (~self.terminal)  # an ended episode visits nothing

    # ----- the public API (numpy in → numpy out, torch in → torch out) -------------------
    # Every method also takes a batch of logits (..., O, A) and answers for each (runs in parallel).
    def policy(self, theta: ArrayLike) -> ArrayLike:
        """π(a|s), shape (S, A)."""
        return like_input(self.policy_t(theta), theta)

    def values(self, theta: ArrayLike) -> ArrayLike:
        """V^π(s), shape (S,); zero at terminal states."""
        return like_input(self.values_t(theta), theta)

    def q_values(self, theta: ArrayLike) -> ArrayLike:
        """Q^π(s, a), shape (S, A)."""
        return like_input(self.q_values_t(theta), theta)

    def advantages(self, theta: ArrayLike) -> ArrayLike:
        """A^π(s, a) = Q^π(s, a) − V^π(s), shape (S, A)."""
        return like_input(self.q_values_t(theta) - self.values_t(theta).unsqueeze(-1), theta)

    def visitation(self, theta: ArrayLike) -> ArrayLike:
        """Discounted state visitation d^π(s) = Σ_t γ^t Pr(s_t = s), shape (S,); 0 at terminal states."""
        return like_input(self.visitation_t(theta), theta)

    def objective(self, theta: ArrayLike) -> Any:
        """J(θ) = μ₀ · V^π: a float (a numpy array (...,) for a batch of logits)."""
        with torch.no_grad():
            value = self.objective_t(theta)
        return float(value) if value.ndim == 0 else value.numpy()

    def gradient(self, theta: ArrayLike) -> ArrayLike:
        r"""∇_θ J, shape (O, A), by autograd through the linear solve of :meth:`values`.

        Equal to the policy-gradient theorem's Σ_s d^π(s) Σ_a ∇_θ π(a|s) Q^π(s, a)
        (the tests check both, and finite differences).
        """
        theta_t = self._theta(theta).detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.objective_t(theta_t).sum(), theta_t)
        return like_input(grad, theta)

    def __repr__(self) -> str:
        return (
            f"TabularMDP(S={self.num_states}, A={self.num_actions}, O={self.num_observations}, gamma={self.gamma:g}, "
            f"terminal={torch.nonzero(self.terminal).flatten().tolist()})"
        )
