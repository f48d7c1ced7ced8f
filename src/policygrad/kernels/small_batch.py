"""The ``numpy-mlp`` learner: the fused step on numpy arrays, for small batches (≤ :data:`MAX_SAMPLES` samples).

Why: an A2C update at SB3's zoo layout (8 environments × 5 steps) has 40 samples, and there
every eager torch op costs its fixed overhead whatever its size: the torch kernel's step
(:class:`policygrad.kernels.fused_mlp.FusedMLPLearner`) is about 75 of them, a third of the
update. A numpy op on arrays this small costs a fraction of a torch op. This
module computes the same step — the chain rule through the MLPs, the entropy and value
terms, per-network clipping, the post-update KL and the metrics; Adam stays torch's fused
kernel — on numpy views of the same flat buffers, so the parameters, the optimiser state
and checkpoints are shared with the torch paths, which can alternate with it within a run.

Only small batches of modest networks come here (:func:`serves`): beyond them torch's kernels
win, and numpy's bundled BLAS may start threads for its matmuls (which stall on a loaded
machine). The results equal the torch step's up to float32 rounding (numpy's own
matmuls and ``tanh``); ``tests/test_learners.py`` holds both to the autograd learner.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policygrad.kernels.fused_agent import LOG_SQRT_2PI, FusedAgent
from policygrad.kernels.fused_mlp import FusedMLPLearner, fused_form, raise_if_not_finite, step_metrics
from policygrad.learners import Batch, LossTerms, StepMetrics

#: The largest batch the numpy step takes, and its largest hidden-layer product (samples × width²):
#: beyond either, torch's kernels win, and numpy's bundled BLAS may start threads for a matmul.
MAX_SAMPLES = 64
MAX_PRODUCT = 64 * 64 * 64


def serves(fused: FusedAgent, samples: int) -> bool:
    """Whether a step on ``samples`` samples runs here (small batches of modest networks)."""
    width = max(fused.sizes[1:-1])
    return samples <= MAX_SAMPLES and samples * width * width <= MAX_PRODUCT


class NumpyViews:
    """numpy views of a :class:`~policygrad.FusedAgent`'s flat buffers, laid out as its pieces."""

    def __init__(self, fused: FusedAgent) -> None:
        assert fused.grad is not None, "the update's buffers exist before the first step"
        self.weights = [w.numpy() for w in fused.weights]
        self.biases = [b.numpy() for b in fused.biases]
        self.grad = fused.grad.numpy()
        self.grad_weights = [w.numpy() for w in fused.grad_weights]
        self.grad_biases = [b.numpy() for b in fused.grad_biases]
        self.segments = fused.segments.numpy()
        self.log_std = None if fused.discrete else fused.log_std.numpy()
        self.grad_log_std = None if fused.discrete else fused.grad_log_std.numpy()
        # The actor's rows of each layer, as the fused agent's actor-only pass takes them.
        self.actor_weights = [w.numpy() for w, _ in fused.actor_layers]
        self.actor_biases = [b.squeeze(-1).numpy() for _, b in fused.actor_layers]


def views(fused: FusedAgent) -> NumpyViews:
    """The fused agent's numpy views, made once (its buffers are never reallocated)."""
    if fused.numpy_views is None:
        fused.numpy_views = NumpyViews(fused)
    return fused.numpy_views


def forward(
    fused: FusedAgent, weights: list[np.ndarray], biases: list[np.ndarray], obs: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outputs (G, action_dim, B) through ``weights`` (both networks' or the actor's), and each layer's input."""
    x = obs.T
    groups = weights[-1].shape[0]
    h = weights[0] @ x
    h += biases[0][:, None]
    inputs = [x, _activate(h, fused.activation).reshape(groups, -1, x.shape[1])]
    for weight, bias in zip(weights[1:-1], biases[1:-1], strict=True):
        h = weight @ inputs[-1]
        h += bias[..., None]
        inputs.append(_activate(h, fused.activation))
    out = weights[-1] @ inputs[-1]
    out += biases[-1][..., None]
    return out, inputs


def _activate(h: np.ndarray, activation: str) -> np.ndarray:
    return np.maximum(h, 0.0, out=h) if activation == "relu" else np.tanh(h, out=h)


def log_probs(fused: FusedAgent, v: NumpyViews, out: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, Any]:
    """log π(a|s) (B,) from the actor's outputs (action_dim, B), and what the head's backward pass needs."""
    if fused.discrete:
        shifted = out - out.max(0)
        log_probs_all = shifted - np.log(np.exp(shifted).sum(0))
        return np.take_along_axis(log_probs_all, actions[None], 0)[0], log_probs_all
    assert v.log_std is not None
    std = np.exp(v.log_std)[:, None]
    z = (actions.T - out) / std
    z_sq = z * z
    return (z_sq * -0.5 - (v.log_std + LOG_SQRT_2PI)[:, None]).sum(0), (z, z_sq, std)


class NumpyMLPLearner(FusedMLPLearner):
    """The ``numpy-mlp`` learner: :class:`FusedMLPLearner` whose small score-function steps run in numpy.

    A step on at most :data:`MAX_SAMPLES` samples of the score-function objective (REINFORCE to
    A2C) runs here; any other step (PPO's clipped surrogate, a larger batch) is the torch
    kernel's. The same loss, gradient, clipping and metrics as the autograd learner.
    """

    name = "numpy-mlp"

    @classmethod
    def refusal(cls, agent: Any, optimizer: Any, cfg: Any) -> str | None:
        """Why this learner would not speed up the run (or cannot serve it), or None."""
        reason = super().refusal(agent, optimizer, cfg)
        if reason is not None:
            return reason
        if getattr(cfg, "clip_coef", None) is not None:
            return "the clipped objective (its steps would all be the torch kernel's)"
        if not hasattr(cfg, "rollout_steps"):
            return "batches of whole episodes (their size varies, mostly beyond its range)"
        form = fused_form(agent)
        if form is None or not serves(form[0], cfg.num_envs * cfg.rollout_steps):
            return f"steps of more than {MAX_SAMPLES} samples, or samples × width² over {MAX_PRODUCT:,}"
        return None

    def step(self, batch: Batch, terms: LossTerms) -> StepMetrics:
        """The step in numpy when it is small and of the score-function objective; else the torch kernel's."""
        if terms.clip_coef is not None or terms.value_clip is not None:
            return super().step(batch, terms)
        fused = self.begin()
        if not serves(fused, len(batch)):
            return super().step(batch, terms)
        v = views(fused)
        obs, actions = batch.observations.numpy(), batch.actions.numpy()
        adv, returns, mask = batch.advantages.numpy(), batch.returns.numpy(), batch.mask.numpy()
        old_log_probs = batch.old_log_probs.numpy()
        weight = mask.astype(np.float32)
        weight /= np.float32(max(int(np.count_nonzero(mask)), 1))

        # Forward, and dLoss/d(outputs) for −Σ w·log π·A + vf_coef·½Σ w(V − R)² − ent_coef·Σ w·H.
        out, inputs = forward(fused, v.weights, v.biases, obs)
        log_probs_now, saved = log_probs(fused, v, out[0], actions)
        grad_out = np.zeros_like(out)
        grad_log_probs = -(weight * adv)
        ent_weight = weight * np.float32(terms.ent_coef) if terms.ent_coef else None
        if fused.discrete:
            probs = np.exp(saved)
            entropy = -(probs * saved).sum(0)
            chosen = np.zeros_like(probs)
            np.put_along_axis(chosen, actions[None], 1.0, 0)
            np.multiply(chosen - probs, grad_log_probs, out=grad_out[0])  # d log π(a)/dz = onehot(a) − p
            if ent_weight is not None:  # dH/dz_j = −p_j (log p_j + H)
                grad_out[0] += probs * (saved + entropy) * ent_weight
        else:
            z, z_sq, std = saved
            assert v.log_std is not None and v.grad_log_std is not None
            entropy = np.full(1, (v.log_std + (0.5 + LOG_SQRT_2PI)).sum(), dtype=np.float32)
            np.divide(z * grad_log_probs, std, out=grad_out[0])  # d log π/dμ = z/σ
            np.matmul(z_sq - 1.0, grad_log_probs, out=v.grad_log_std)  # d log π/d log σ = z² − 1
            if ent_weight is not None:
                v.grad_log_std -= ent_weight.sum()  # dH/d log σ = 1
        log_ratio = log_probs_now - old_log_probs
        rows = [log_probs_now * adv, np.broadcast_to(entropy, log_probs_now.shape), np.expm1(log_ratio) - log_ratio]
        if fused.groups == 2:
            error = out[1, 0] - returns
            np.multiply(error, weight * np.float32(terms.vf_coef), out=grad_out[1, 0])
            rows.append(error * error)
        _backward(fused, v, grad_out, inputs)
        norms = np.sqrt(v.segments @ (v.grad * v.grad))
        values = np.concatenate([np.stack(rows) @ weight, norms]).tolist()
        raise_if_not_finite(values)
        _clip_and_adam(fused, v, norms, terms.max_grad_norm, terms.joint_clip)
        approx_kl = values[2]
        if terms.kl_after_step:
            new_out, _ = forward(fused, v.actor_weights, v.actor_biases, obs)
            log_ratio = log_probs(fused, v, new_out[0], actions)[0] - old_log_probs
            approx_kl = float((np.expm1(log_ratio) - log_ratio) @ weight)
        return step_metrics(values, approx_kl, terms, fused.groups)


def _backward(fused: FusedAgent, v: NumpyViews, grad_out: np.ndarray, inputs: list[np.ndarray]) -> None:
    """Fill the gradient buffer from dLoss/d(outputs) (G, action_dim, B), as FusedAgent.backward does."""
    delta = grad_out
    for layer in range(len(v.weights) - 1, 0, -1):
        np.matmul(delta, inputs[layer].transpose(0, 2, 1), out=v.grad_weights[layer])
        np.sum(delta, -1, out=v.grad_biases[layer])
        delta = v.weights[layer].transpose(0, 2, 1) @ delta
        if fused.activation == "relu":
            delta *= inputs[layer] > 0.0
        else:
            delta *= 1.0 - inputs[layer] * inputs[layer]
    delta = delta.reshape(-1, delta.shape[-1])
    np.matmul(delta, inputs[0].T, out=v.grad_weights[0])
    np.sum(delta, -1, out=v.grad_biases[0])


def _clip_and_adam(fused: FusedAgent, v: NumpyViews, norms: np.ndarray, max_grad_norm: float, joint: bool) -> None:
    """:meth:`FusedAgent.clip_and_step` with the clipping in numpy."""
    if max_grad_norm > 0 and joint:
        v.grad *= min(np.float32(max_grad_norm) / (np.float32(np.sqrt(norms @ norms)) + np.float32(1e-6)), 1.0)
    elif max_grad_norm > 0:
        v.grad *= np.minimum(np.float32(max_grad_norm) / (norms + np.float32(1e-6)), np.float32(1.0)) @ v.segments
    fused.adam_step()  # one fused kernel: cheaper than numpy's ten passes over the buffers
