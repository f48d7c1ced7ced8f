"""A matrix game against an opponent that best-responds to the policy: the objective is the worst case."""

from __future__ import annotations

import numpy as np
import torch

from policygrad.errors import PolicygradError
from policygrad.exact.bandit import bandit
from policygrad.exact.mdp import ArrayLike, TabularMDP, as_float64, like_input


class BestResponseGame:
    r"""A two-player zero-sum matrix game played by a softmax policy against a best responder.

    ``payoff[a, b]`` (A, B) is the policy's reward when it plays a and the opponent b.
    The opponent sees π and answers with the column that hurts it most, so the
    objective is the worst case

    .. math::

        J(θ) = \min_b \sum_a π_θ(a)\, M[a, b], \qquad π_θ = \operatorname{softmax}(θ)

    ``theta`` has shape (1, A) like a one-state :class:`TabularMDP`. J is concave in π
    but not differentiable where responses tie; :meth:`gradient` returns the gradient
    against the current best response (autograd splits ties evenly), which is what a
    policy-gradient learner facing this opponent estimates. Numpy in → numpy out,
    torch in → torch out; :meth:`objective` returns a float.
    """

    def __init__(self, payoff: ArrayLike, action_names: list[str] | None = None) -> None:
        self.payoff = as_float64(payoff).detach()
        if self.payoff.ndim != 2 or 0 in self.payoff.shape:
            raise PolicygradError(f"payoff must be a non-empty (A, B) matrix, got shape {tuple(self.payoff.shape)}")
        if not torch.isfinite(self.payoff).all():
            raise PolicygradError("payoff must be finite (found NaN or inf)")
        A = self.payoff.shape[0]
        self.action_names = list(action_names) if action_names is not None else [str(a) for a in range(A)]

    @property
    def num_actions(self) -> int:
        return self.payoff.shape[0]

    @property
    def theta_shape(self) -> tuple[int, int]:
        return (1, self.num_actions)

    def zeros(self) -> np.ndarray:
        """Logits of the uniform policy, shape (1, A)."""
        return np.zeros(self.theta_shape)

    def _theta(self, theta: ArrayLike) -> torch.Tensor:
        theta_t = as_float64(theta)
        if tuple(theta_t.shape) != self.theta_shape:
            raise PolicygradError(f"theta must have shape {self.theta_shape}, got {tuple(theta_t.shape)}")
        return theta_t

    def policy_t(self, theta: ArrayLike) -> torch.Tensor:
        """π = softmax(θ), shape (1, A)."""
        return torch.softmax(self._theta(theta), dim=-1)

    def response_payoffs_t(self, theta: ArrayLike) -> torch.Tensor:
        """Expected payoff against each opponent action, πᵀM, shape (B,)."""
        return self.policy_t(theta)[0] @ self.payoff

    def objective_t(self, theta: ArrayLike) -> torch.Tensor:
        """J(θ) = min_b (πᵀM)_b, a 0-d tensor."""
        return self.response_payoffs_t(theta).min()

    def policy(self, theta: ArrayLike) -> ArrayLike:
        """π, shape (1, A)."""
        return like_input(self.policy_t(theta), theta)

    def best_response(self, theta: ArrayLike) -> int:
        """The opponent's action against π (the first one if several tie)."""
        with torch.no_grad():
            return int(self.response_payoffs_t(theta).argmin())

    def objective(self, theta: ArrayLike) -> float:
        """The worst-case expected payoff (a float)."""
        with torch.no_grad():
            return float(self.objective_t(theta))

    def gradient(self, theta: ArrayLike) -> ArrayLike:
        """∇_θ J against the current best response, shape (1, A)."""
        theta_t = self._theta(theta).detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.objective_t(theta_t), theta_t)
        return like_input(grad, theta)

    def as_bandit(self, theta: ArrayLike) -> TabularMDP:
        """The one-step MDP the policy faces while the opponent plays its best response to π_θ."""
        return bandit(self.payoff[:, self.best_response(theta)].numpy(), noise="none", action_names=self.action_names)
