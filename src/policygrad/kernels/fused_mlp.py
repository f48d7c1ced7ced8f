"""The ``fused-mlp`` learner and rollout sampler: the learner's step on the fused layout.

:class:`FusedMLPLearner` takes exactly the step of :class:`policygrad.learners.AutogradLearner`
— the score-function or clipped-surrogate loss, the value loss, the entropy bonus,
per-network clipping, Adam — with the gradient written out (:mod:`.fused_agent`) instead of
recorded by autograd. It knows no algorithm: the minibatch, its advantages and the loss
terms come from the algorithm's own loop. ``tests/test_learners.py`` holds it equal to the
autograd learner, update by update, for every algorithm of the chain.

The parameters are views of the layout's flat buffer (so the agent module, its
``state_dict``, checkpoints and the autograd learner see nothing unusual and can alternate
with this one). The layout is cached on the agent object and re-adopted when the
parameters are replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from policygrad.errors import NonFiniteLossError, PolicygradError
from policygrad.kernels.deferred_metrics import DeferredStepMetrics
from policygrad.kernels.eligibility import agent_parameters, agent_refusal
from policygrad.kernels.fused_agent import FusedAgent
from policygrad.learners import Batch, LossTerms, StepMetrics
from policygrad.optim import Adam


# ----- the layout, cached per agent -------------------------------------------------------------
@dataclass
class _Cache:
    """Per-agent state of the fused layout (never copied or pickled with the agent)."""

    params: list[nn.Parameter] | None = None
    fused: FusedAgent | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> None:
        return None

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(None), ())


def fused_form(agent: Any) -> tuple[FusedAgent, list[nn.Parameter]] | None:
    """The agent's layout and its parameters (views of the layout's buffer), or None where it cannot hold it.

    Re-adopts the parameters when they were replaced (``.to()``, a new module, ``load_state_dict(assign=True)``).
    """
    cache = agent.__dict__.get("_fused_cache")
    if cache is None:
        cache = agent.__dict__["_fused_cache"] = _Cache()
    if cache.fused is not None and cache.params is not None and cache.fused.owns(cache.params):
        return cache.fused, cache.params
    params = agent_parameters(agent)
    if params is None:
        return None
    with torch.inference_mode(False):  # the buffers are the parameters: never inference tensors
        if cache.fused is None:
            cache.fused = FusedAgent(agent)
        cache.fused.adopt(params)
    cache.params = params
    return cache.fused, params


def invalidate(agent: Any) -> None:
    """Re-read the parameters on next use: after writes through ``.data``, which bypass version counters."""
    cache = agent.__dict__.get("_fused_cache")
    if cache is not None and cache.fused is not None:
        cache.fused.versions = ()


class FusedSampler:
    """The rollout's policy forward on the layout: actor and critic as one ``addmm`` per layer and vector step."""

    name = "fused-mlp"

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def ready(self) -> FusedAgent | None:
        """The layout with the rollout weights refreshed, to :meth:`~FusedAgent.draw` from; None if it cannot serve."""
        form = fused_form(self.agent)
        if form is None:
            return None
        fused, params = form
        fused.refresh(params)
        return fused


# ----- which optimisers and settings it serves ------------------------------------------------
def optimizer_refusal(optimizer: Any, params: list[nn.Parameter]) -> str | None:
    """Why the fused Adam step cannot stand in for ``optimizer``, or None.

    It serves a plain Adam — :class:`policygrad.optim.Adam` or ``torch.optim.Adam`` — with one
    parameter group holding exactly the agent's parameters, no weight decay, AMSGrad or
    maximise, and equal step counts.
    """
    if type(optimizer) not in (torch.optim.Adam, Adam):
        return f"optimizer {type(optimizer).__name__} (it serves Adam)"
    if len(optimizer.param_groups) != 1:
        return "more than one parameter group"
    group = optimizer.param_groups[0]
    flags = ("amsgrad", "maximize", "capturable", "differentiable", "fused", "decoupled_weight_decay")
    if group["weight_decay"] != 0 or any(group.get(flag) for flag in flags) or isinstance(group["lr"], torch.Tensor):
        return "an Adam variant (weight decay, AMSGrad, maximise, tensor lr …)"
    if len(group["params"]) != len(params) or {id(p) for p in group["params"]} != {id(p) for p in params}:
        return "the optimizer does not hold exactly the agent's parameters"
    states = [optimizer.state.get(p) for p in params]
    if any(states) and (not all(states) or len({float(s["step"]) for s in states}) > 1):
        return "parameters at different Adam step counts"
    return None


# ----- the learner -------------------------------------------------------------------------------
class FusedMLPLearner:
    """The learner's step with a written-out gradient on the fused layout (any algorithm's minibatch)."""

    name = "fused-mlp"

    def __init__(self, agent: Any, optimizer: Any) -> None:
        self.agent, self.optimizer = agent, optimizer

    @classmethod
    def refusal(cls, agent: Any, optimizer: Any, cfg: Any) -> str | None:
        """Why this learner cannot serve the run, or None when it can."""
        reason = agent_refusal(agent)
        if reason is None:
            form = fused_form(agent)
            reason = "the agent does not fit the layout" if form is None else optimizer_refusal(optimizer, form[1])
        return reason

    def begin(self) -> FusedAgent:
        """The layout, holding the agent's parameters and the optimiser's state, ready for one step."""
        form = fused_form(self.agent)
        if form is None:
            raise PolicygradError(
                f"the {self.name} learner can no longer serve this agent: {agent_refusal(self.agent)}"
            )
        fused, params = form
        fused.begin(params, self.optimizer)
        return fused

    def step(self, batch: Batch, terms: LossTerms) -> StepMetrics:
        """One step on ``batch``: the same loss, gradient and Adam step as the autograd learner."""
        fused = self.begin()
        obs, actions, advantages, mask = batch.observations, batch.actions, batch.advantages, batch.mask
        weight = torch.where(mask, 1.0, 0.0).div_(max(float(torch.count_nonzero(mask)), 1.0))  # masked means
        out, inputs = fused.forward(obs)
        log_probs, saved = fused.log_probs(out[0], actions)
        # dL/dlog π per sample: −w·A for the score function; for the clipped surrogate, −w·A·ρ where
        # the unclipped term of min(ρA, clip(ρ)A) is the smaller one (elsewhere the min does not depend on θ).
        grad_log_probs = -(weight * advantages)
        if terms.clip_coef is not None:
            ratio = (log_probs - batch.old_log_probs).exp_()
            clipped_term = ratio.clamp(1.0 - terms.clip_coef, 1.0 + terms.clip_coef).mul_(advantages)
            grad_log_probs.mul_(ratio).mul_(ratio * advantages <= clipped_term)
        grad_out = torch.zeros_like(out)
        one_hot = one_hot_columns(actions, fused.action_dim) if fused.discrete else None
        entropy_weight = weight * terms.ent_coef if terms.ent_coef else None
        fused.head_backward(saved, one_hot, grad_log_probs, entropy_weight, grad_out[0])
        error = None
        if fused.groups == 2:  # ½ vf_coef·Σ w(V − R)²: dL/dV = vf_coef · w · (V − R)
            if terms.value_clip is None:
                error = grad_error = out[1, 0] - batch.returns
            else:
                error, grad_error = clipped_value_error(out[1, 0], batch.old_values, batch.returns, terms.value_clip)
            torch.mul(grad_error, weight * terms.vf_coef, out=grad_out[1, 0])
        fused.backward(grad_out, inputs)
        entropy_input = saved if fused.discrete else fused.log_std.clone()  # log σ before the step
        norms = fused.gradient_norms()
        norm_values = norms.tolist()
        raise_if_not_finite(norm_values)  # a NaN or inf loss has a NaN or inf gradient: nothing steps
        fused.clip_and_step(norms, terms.max_grad_norm, terms.joint_clip)
        kl_after_step = None
        if terms.kl_after_step:
            new_log_probs, _ = fused.log_probs(fused.actor_forward(obs), actions)
            log_ratio = new_log_probs - batch.old_log_probs
            kl_after_step = torch.dot(torch.expm1(log_ratio) - log_ratio, weight).item()
        grad_norm = math.sqrt(sum(v * v for v in norm_values))
        return DeferredStepMetrics(  # type: ignore[return-value]  # StepMetrics' fields, reduced when read
            terms, weight, log_probs, batch.old_log_probs, advantages, entropy_input, error, grad_norm,
            kl_after_step, fused.discrete,
        )  # fmt: skip


def step_metrics(values: list[float], approx_kl: float, terms: LossTerms, groups: int) -> StepMetrics:
    """The named metrics from the reduced values: the rows' masked means, then the per-network gradient norms.

    Rows: the objective, the entropy, the k3 KL, [the clipped indicator], [(V − R)² with a critic].
    """
    rows = 3 + (terms.clip_coef is not None) + (groups == 2)
    return StepMetrics(
        policy_loss=-values[0],
        entropy=values[1],
        approx_kl=approx_kl,
        grad_norm=math.sqrt(sum(v * v for v in values[rows:])),
        value_loss=0.5 * values[rows - 1] if groups == 2 else None,
        clip_fraction=values[3] if terms.clip_coef is not None else None,
    )


def clipped_value_error(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss ½·max((V − R)², (V_clip − R)²), V_clip = V_old + clamp(V − V_old, ±clip).

    Returns the error whose square is the loss term (for the metrics) and dL/dV per unit weight, as
    autograd differentiates :func:`policygrad.losses.value_loss`: ``torch.maximum`` sends the gradient
    to the larger square and half to each on a tie (inside the clip range the two are equal up to
    rounding), and the clamp passes it only inside its closed range.
    """
    error = values - returns
    delta = values - old_values
    clipped_error = (old_values + delta.clamp(-clip, clip)) - returns
    square, clipped_square = error * error, clipped_error * clipped_error
    tie = (square == clipped_square).float().mul_(0.5)
    to_plain = (square > clipped_square).float().add_(tie)
    to_clipped = (clipped_square > square).float().add_(tie).mul_((delta >= -clip) & (delta <= clip))
    grad = error * to_plain + clipped_error * to_clipped
    return torch.where(square >= clipped_square, error, clipped_error), grad


def raise_if_not_finite(values: list[float]) -> None:
    """A NaN or inf loss or gradient norm stops the step before the weights change."""
    bad = next((v for v in values if not math.isfinite(v)), None)
    if bad is not None:
        raise NonFiniteLossError(f"the loss or its gradient norm became {bad} (the weights were left unchanged)")


def one_hot_columns(actions: torch.Tensor, n: int) -> torch.Tensor:
    """Feature-major one-hot: (n, B) for actions (B,)."""
    return torch.zeros(n, actions.shape[-1]).scatter_(0, actions.unsqueeze(0), 1.0)


__all__ = ["FusedMLPLearner", "FusedSampler", "fused_form", "invalidate"]
