"""The fused actor-critic: the rollout's and the update's hot paths in a few large tensor ops.

Why it exists: at policy-gradient scale (MLPs of 64 units, batches of 8 to 1,024) an
eager torch op costs microseconds of fixed overhead whatever its size, and one autograd
forward/backward + per-network clipping + Adam step is about 150 of them. This module
computes the same mathematics in about 45:

- actor and critic are evaluated together: at every layer their weights form one
  (2, out, in) tensor and one ``baddbmm`` evaluates both networks (the critic's
  1-unit head is zero-padded to the actor's width);
- the backward pass is written out — the chain rule through the MLPs, the clipped
  surrogate, the value loss and the entropy — instead of recorded by autograd;
- parameters, gradients and Adam's moments live in flat (2, M) buffers (row 0 the
  actor, row 1 the critic), so per-network clipping is one norm and Adam is six
  elementwise ops;
- tanh, unusually slow in float32 on some CPUs, is computed as 2σ(2x) − 1 on large
  batches (the same function up to float32 rounding).

The reference is the autograd path it replaces: :func:`policygrad.algorithms.ppo.update`
and :func:`policygrad.algorithms.common.actor_critic_update` with ``fused=False`` use
autograd and ``torch.optim.Adam``, and ``tests/test_fast.py`` checks that both agree up
to float rounding (losses and gradients against autograd, parameters after whole updates,
sampled actions against the distributions API). The agent's parameters and the Adam
state stay the source of truth: an update copies them into the flat buffers, steps there,
and copies them back, so checkpoints, exact resume and the reference path see an
ordinary ``nn.Module`` and an ordinary ``torch.optim.Adam``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from policygrad.errors import NonFiniteLossError
from policygrad.optim import Adam

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# From this many elements on, 2σ(2x) − 1 (three cheap ops) beats one float32 tanh.
SIGMOID_TANH_MIN_ELEMENTS = 4096
ACTIVATIONS = ("tanh", "relu")


# ----- which agents and optimisers the fused path serves ----------------------------------------
def _linears(seq: nn.Module | None) -> list[nn.Linear]:
    return [] if seq is None else [m for m in seq if isinstance(m, nn.Linear)]


def agent_parameters(agent: Any) -> list[nn.Parameter] | None:
    """The agent's parameters in fused-layout order, or None if the fused path cannot serve it.

    Served: policygrad's MLP agents with tanh or ReLU, float32 on CPU, every parameter trained.
    """
    spec = getattr(agent, "spec", None)
    if spec is None or spec.activation not in ACTIVATIONS:
        return None
    actor, critic = _linears(agent.actor), _linears(agent.critic)
    depth = len(spec.hidden_sizes) + 1
    if len(actor) != depth or len(critic) != (depth if spec.critic else 0):
        return None
    params = [p for layer in actor + critic for p in (layer.weight, layer.bias)]
    if not spec.discrete:
        params.append(agent.log_std)
    if len(params) != sum(1 for _ in agent.parameters()):
        return None
    if not all(p.dtype == torch.float32 and p.device.type == "cpu" and p.requires_grad for p in params):
        return None
    return params


def _hidden(bias: torch.Tensor, left: torch.Tensor, right: torch.Tensor, activation: str) -> torch.Tensor:
    """activation(bias + left @ right): ``addmm`` for matrices, ``baddbmm`` for stacks of them."""
    op = torch.addmm if left.dim() == 2 else torch.baddbmm
    if activation == "relu":
        return op(bias, left, right).relu_()
    if left.numel() // left.shape[-1] * right.shape[-1] < SIGMOID_TANH_MIN_ELEMENTS:
        return op(bias, left, right).tanh_()
    # tanh(x) = 2σ(2x) − 1, with the doubling folded into the matmul.
    return op(bias, left, right, beta=2.0, alpha=2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _hidden_backward(grad: torch.Tensor, output: torch.Tensor, activation: str) -> torch.Tensor:
    """The gradient through the activation, from its output: (1 − y²) for tanh, [y > 0] for ReLU."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad, output, 0.0)
    return torch.ops.aten.tanh_backward(grad, output)


# ----- the rollout: one fused forward per vector step -------------------------------------------
class FusedPolicy:
    """The agent's weights laid out for batched inference: one ``addmm`` per layer for both networks.

    Layer 0 is one ``(obs, 2h)`` matrix (actor and critic side by side) and later layers are
    block-diagonal. The blocks are views of the buffers, so :meth:`refresh` re-reads the
    agent's parameters with a single copy.
    """

    def __init__(self, agent: Any) -> None:
        spec = agent.spec
        self.discrete, self.action_dim, self.activation = spec.discrete, spec.action_dim, spec.activation
        self.has_critic = spec.critic
        nets = 2 if spec.critic else 1
        sizes = [spec.obs_dim, *spec.hidden_sizes]
        outs = [*spec.hidden_sizes, spec.action_dim]
        self.weights, self.biases, views = [], [], []
        for layer, (fan_in, fan_out) in enumerate(zip(sizes, outs, strict=True)):
            first, last = layer == 0, layer == len(outs) - 1
            rows = fan_in if first else nets * fan_in
            cols = nets * fan_out if not last else fan_out + (1 if spec.critic else 0)
            weight, bias = torch.zeros(rows, cols), torch.zeros(cols)
            self.weights.append(weight)
            self.biases.append(bias)
            for net in range(nets):
                r = slice(0, fan_in) if first else slice(net * fan_in, (net + 1) * fan_in)
                c = (
                    slice(net * fan_out, (net + 1) * fan_out)
                    if not last
                    else (slice(0, fan_out) if net == 0 else slice(fan_out, fan_out + 1))
                )
                views.append((net, weight[r, c].t(), bias[c]))
        # In agent_parameters() order: actor (weight, bias) per layer, critic's, then log_std.
        self.views = [v for net in range(nets) for n, w, b in views if n == net for v in (w, b)]
        self.log_std = None if spec.discrete else torch.zeros(spec.action_dim)
        if self.log_std is not None:
            self.views.append(self.log_std)
        self.std = None
        self.width = max(cols for cols in (w.shape[1] for w in self.weights[:-1])) if len(self.weights) > 1 else 0

    @torch.no_grad()
    def refresh(self, params: list[torch.Tensor]) -> None:
        """Copy the agent's current parameters in (``params`` in :func:`agent_parameters` order)."""
        torch._foreach_copy_(self.views, params)
        if self.log_std is not None:
            self.std = self.log_std.exp()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Policy outputs (B, action_dim) — logits or means — and values (B,) or None."""
        h = obs
        small = obs.shape[0] * self.width < SIGMOID_TANH_MIN_ELEMENTS
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            if self.activation == "relu":
                h = torch.addmm(bias, h, weight).relu_()
            elif small:
                h = torch.addmm(bias, h, weight).tanh_()
            else:  # tanh(x) = 2σ(2x) − 1, the doubling folded into the matmul
                h = torch.addmm(bias, h, weight, beta=2.0, alpha=2.0).sigmoid_().mul_(2.0).sub_(1.0)
        out = torch.addmm(self.biases[-1], h, self.weights[-1])
        return out[:, : self.action_dim], (out[:, self.action_dim] if self.has_critic else None)

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Actions, log-probs and values from pre-drawn noise (see :meth:`Agent.sample`)."""
        out, values = self.forward(obs)
        if self.discrete:
            log_probs_all = torch.log_softmax(out, dim=-1)
            cdf = log_probs_all.exp().cumsum_(-1)
            # Inverse-CDF sampling: the number of cdf entries <= u, clamped for rounding at the top.
            actions = torch.searchsorted(cdf, noise.unsqueeze(-1), right=True).squeeze_(-1)
            actions.clamp_(max=self.action_dim - 1)
            return actions, log_probs_all.gather(-1, actions.unsqueeze(-1)).squeeze_(-1), values
        actions = torch.addcmul(out, self.std, noise)
        log_probs = (noise.square().mul_(-0.5) - (self.log_std + LOG_SQRT_2PI)).sum(-1)
        return actions, log_probs, values


@dataclass
class _Cache:
    """Per-agent state of the fused paths, dropped by :func:`invalidate`."""

    params: list[nn.Parameter] | None
    versions: tuple[int, ...] = ()
    policy: FusedPolicy | None = None
    learner: FusedLearner | None = None


def _cache(agent: Any) -> _Cache:
    cache = agent.__dict__.get("_fused_cache")
    if cache is None:
        cache = _Cache(agent_parameters(agent))
        agent.__dict__["_fused_cache"] = cache
    return cache


def policy(agent: Any) -> FusedPolicy | None:
    """The agent's inference snapshot (None if the fused path cannot serve this agent).

    Rebuilt whenever a parameter was modified in place (optimiser steps, ``load_state_dict``)
    — the key is the parameters' version counters, so a rollout of T steps builds it once.
    """
    cache = _cache(agent)
    if cache.params is None:
        return None
    versions = tuple(p._version for p in cache.params)
    if versions != cache.versions:
        if cache.policy is None:
            cache.policy = FusedPolicy(agent)
        cache.policy.refresh(cache.params)
        cache.versions = versions
    return cache.policy


def invalidate(agent: Any) -> None:
    """Forget the cached layout (after parameters were replaced, moved or cast)."""
    agent.__dict__["_fused_cache"] = None


# ----- the update: flat parameters, a written-out backward, fused Adam ------------------------
class FusedLearner:
    """One flat buffer each for the parameters, gradients and Adam moments of an agent.

    Activations are feature-major — (G, features, B), G = 2 networks with a critic, else 1 —
    so that every matmul has a wide output (CPU BLAS is slow on outputs a few columns wide).
    Layout of the buffer, each piece a contiguous view:

    =============  =================  ===============================================
    piece          shape              holds
    =============  =================  ===============================================
    layer 0        (obs, G·h₁)        both networks' first weights, transposed
    its bias       (G·h₁,)
    layer l ≥ 1    (G, out, in)       one (out, in) weight per network
    its bias       (G, out)
    output layer   (G, A, h_L)        the critic's single unit in row 0 of its block
    log_std        (A,)               Gaussian policies only
    =============  =================  ===============================================
    """

    def __init__(self, agent: Any) -> None:
        spec = agent.spec
        self.discrete, self.action_dim, self.activation = spec.discrete, spec.action_dim, spec.activation
        g = self.groups = 2 if spec.critic else 1
        sizes = [spec.obs_dim, *spec.hidden_sizes, spec.action_dim]
        self.size = sizes[0] * g * sizes[1] + g * sizes[1]
        self.size += sum(g * (o * i + o) for i, o in zip(sizes[1:-1], sizes[2:], strict=True))
        self.size += 0 if spec.discrete else spec.action_dim
        self.params, self.grad = torch.zeros(self.size), torch.zeros(self.size)
        self.exp_avg, self.exp_avg_sq = torch.zeros(self.size), torch.zeros(self.size)
        self.sizes = sizes
        self.weights, self.biases = self._pieces(self.params)
        self.grad_weights, self.grad_biases = self._pieces(self.grad)
        self.biases = [b.unsqueeze(-1) for b in self.biases]
        self.log_std = self.params[-spec.action_dim :] if not spec.discrete else None
        self.grad_log_std = self.grad[-spec.action_dim :] if not spec.discrete else None
        self.param_views = self._param_views(self.params)
        self.exp_avg_views = self._param_views(self.exp_avg)
        self.exp_avg_sq_views = self._param_views(self.exp_avg_sq)
        # segments[g] is 1 on network g's entries: per-network squared norms are one matrix-vector product.
        self.segments = torch.zeros(g, self.size)
        for row in range(g):
            for view, net in zip(self._param_views(self.segments[row]), self._nets(), strict=True):
                if net == row:
                    view.fill_(1.0)
        self.step_tensor = torch.zeros(())
        self.agent_params: list[nn.Parameter] = []
        self.states: list[dict[str, Any]] = []
        self.steps = 0

    def _pieces(self, buffer: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        g, sizes = self.groups, self.sizes
        weights, biases, offset = [], [], 0

        def take(n: int) -> torch.Tensor:
            nonlocal offset
            offset += n
            return buffer[offset - n : offset]

        weights.append(take(sizes[0] * g * sizes[1]).view(sizes[0], g * sizes[1]))
        biases.append(take(g * sizes[1]))
        for fan_in, fan_out in zip(sizes[1:-1], sizes[2:], strict=True):
            weights.append(take(g * fan_out * fan_in).view(g, fan_out, fan_in))
            biases.append(take(g * fan_out).view(g, fan_out))
        return weights, biases

    def _nets(self) -> list[int]:
        """The network (0 actor, 1 critic) of each entry of :meth:`_param_views`."""
        per_net = 2 * (len(self.sizes) - 1)
        return [0] * per_net + [1] * (per_net if self.groups == 2 else 0) + ([] if self.discrete else [0])

    def _param_views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``buffer`` shaped like the agent's parameters, in :func:`agent_parameters` order."""
        weights, biases = self._pieces(buffer)
        h = self.sizes[1]
        out = []
        for net in range(self.groups):
            out += [weights[0][:, net * h : (net + 1) * h].t(), biases[0][net * h : (net + 1) * h]]
            for layer, (w, b) in enumerate(zip(weights[1:], biases[1:], strict=True)):
                rows = 1 if net == 1 and layer == len(weights) - 2 else w.shape[1]  # the critic's 1-unit head
                out += [w[net, :rows], b[net, :rows]]
        if not self.discrete:
            out.append(buffer[-self.action_dim :])
        return out

    # ----- bracket an update: copy in, step, copy out ----------------------------------------
    def begin(self, agent_params: list[nn.Parameter], optimizer: torch.optim.Adam) -> None:
        """Copy the parameters and Adam's state into the flat buffers."""
        group = optimizer.param_groups[0]
        self.lr, (self.beta1, self.beta2), self.eps = float(group["lr"]), group["betas"], group["eps"]
        states = [optimizer.state[p] for p in agent_params]
        if any(not s for s in states):  # first step: Adam's own lazy initialisation
            for p, s in zip(agent_params, states, strict=True):
                s["step"] = torch.tensor(0.0, dtype=torch.get_default_dtype())
                s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self.agent_params, self.states, self.steps = agent_params, states, 0
        with torch.no_grad():
            self.step_tensor.copy_(states[0]["step"])
            torch._foreach_copy_(self.param_views, agent_params)
            torch._foreach_copy_(self.exp_avg_views, [s["exp_avg"] for s in states])
            torch._foreach_copy_(self.exp_avg_sq_views, [s["exp_avg_sq"] for s in states])

    def end(self) -> None:
        """Copy the stepped parameters and Adam's state back (only after a finite update)."""
        with torch.no_grad():
            torch._foreach_copy_(self.agent_params, self.param_views)
            torch._foreach_copy_([s["exp_avg"] for s in self.states], self.exp_avg_views)
            torch._foreach_copy_([s["exp_avg_sq"] for s in self.states], self.exp_avg_sq_views)
            torch._foreach_copy_([s["step"] for s in self.states], [self.step_tensor] * len(self.states))
        self.agent_params, self.states = [], []

    # ----- the network ------------------------------------------------------------------------
    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Outputs (G, action_dim, B) for observations (B, obs): row 0 the actor's, row 1 the critic's
        (the value in its column 0); also the layer inputs the backward pass needs."""
        x = obs.t()
        h = _hidden(self.biases[0], self.weights[0].t(), x, self.activation)
        inputs = [x, h.view(self.groups, -1, x.shape[1])]
        for weight, bias in zip(self.weights[1:-1], self.biases[1:-1], strict=True):
            inputs.append(_hidden(bias, weight, inputs[-1], self.activation))
        return torch.baddbmm(self.biases[-1], self.weights[-1], inputs[-1]), inputs

    def backward(self, grad_out: torch.Tensor, inputs: list[torch.Tensor]) -> None:
        """Fill the gradient buffer from dLoss/d(outputs) (G, action_dim, B); log_std is the caller's."""
        delta = grad_out
        for layer in range(len(self.weights) - 1, 0, -1):
            torch.bmm(delta, inputs[layer].transpose(1, 2), out=self.grad_weights[layer])
            torch.sum(delta, -1, out=self.grad_biases[layer])
            delta = _hidden_backward(
                torch.bmm(self.weights[layer].transpose(1, 2), delta), inputs[layer], self.activation
            )
        delta = delta.view(-1, delta.shape[-1])
        torch.mm(inputs[0], delta.t(), out=self.grad_weights[0])
        torch.sum(delta, -1, out=self.grad_biases[0])

    def step(self, max_grad_norm: float) -> torch.Tensor:
        """Clip each network's gradient to ``max_grad_norm`` and take one Adam step.

        Returns the per-network gradient norms before clipping, (G,). Clipping is
        ``clip_grad_norm_``'s, per network; the step is ``torch.optim.Adam``'s (fused kernel).
        """
        grad = self.grad
        norms = torch.mv(self.segments, grad.square()).sqrt_()
        if max_grad_norm > 0:
            grad.mul_(torch.mv(self.segments.t(), (max_grad_norm / (norms + 1e-6)).clamp_(max=1.0)))
        self.steps += 1
        self.step_tensor += 1
        torch._fused_adam_(
            [self.params],
            [grad],
            [self.exp_avg],
            [self.exp_avg_sq],
            [],
            [self.step_tensor],
            lr=self.lr,
            beta1=self.beta1,
            beta2=self.beta2,
            weight_decay=0.0,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )
        return norms

    # ----- the policy head (feature-major: outputs (action_dim, B)) ----------------------------
    def log_probs(self, out: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """log π(a|s) (B,) from the actor's outputs (action_dim, B), and what :meth:`head_backward` needs."""
        if self.discrete:
            log_probs_all = torch.log_softmax(out, dim=0)
            return log_probs_all.gather(0, actions.unsqueeze(0)).squeeze_(0), log_probs_all
        std = self.log_std.exp().unsqueeze(1)
        z = (actions.t() - out).div_(std)
        z_sq = z.square()
        log_probs = (z_sq * -0.5).sub_((self.log_std + LOG_SQRT_2PI).unsqueeze(1)).sum(0)
        return log_probs, (z, z_sq, std)

    def entropy(self, saved: Any) -> torch.Tensor:
        """Per-sample entropy (B,) — for a Gaussian the same for every sample, shape (1,)."""
        if self.discrete:
            return -(saved.exp() * saved).sum(0)
        return (self.log_std + (0.5 + LOG_SQRT_2PI)).sum().unsqueeze(0)

    def head_backward(
        self,
        saved: Any,
        actions_one_hot: torch.Tensor | None,
        grad_log_probs: torch.Tensor,
        ent_weight: torch.Tensor | None,
        out_grad: torch.Tensor,
    ) -> None:
        """Write dL/d(actor outputs) into ``out_grad`` (action_dim, B), and dL/d(log_std).

        L = Σ_b grad_log_probs_b · log π(a_b|s_b) − Σ_b ent_weight_b · H(π(·|s_b)).
        """
        if self.discrete:
            log_probs_all = saved
            probs = log_probs_all.exp()
            # d log π(a)/dz = onehot(a) − p
            torch.mul(actions_one_hot - probs, grad_log_probs, out=out_grad)
            if ent_weight is not None:
                # dH/dz_j = −p_j (log p_j + H)
                entropy = -(probs * log_probs_all).sum(0)
                out_grad.add_(probs.mul_(log_probs_all + entropy).mul_(ent_weight))
            return
        z, z_sq, std = saved
        # d log π/dμ = z/σ, d log π/d log σ = z² − 1, dH/d log σ = 1
        torch.mul(z, grad_log_probs, out=out_grad).div_(std)
        torch.mv(z_sq.sub_(1.0), grad_log_probs, out=self.grad_log_std)
        if ent_weight is not None:
            self.grad_log_std.sub_(ent_weight.sum())


def learner(agent: Any, optimizer: torch.optim.Optimizer) -> tuple[FusedLearner, list[nn.Parameter]] | None:
    """The agent's fused learner and its parameters, or None where the fused path does not apply.

    It applies to policygrad MLP agents (see :func:`agent_parameters`) trained by a plain Adam,
    :class:`policygrad.optim.Adam` or ``torch.optim.Adam`` (one parameter group holding exactly
    the agent's parameters, no weight decay, AMSGrad or maximise, equal step counts).
    """
    cache = _cache(agent)
    params = cache.params
    if params is None or type(optimizer) not in (torch.optim.Adam, Adam) or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if (
        group["weight_decay"] != 0
        or group["amsgrad"]
        or group["maximize"]
        or group.get("capturable")
        or group.get("differentiable")
        or group.get("fused")
        or group.get("decoupled_weight_decay")
        or isinstance(group["lr"], torch.Tensor)
        or not all(p.requires_grad for p in params)
    ):
        return None
    members = group["params"]
    if len(members) != len(params) or not all(a is b for a, b in zip(members, params, strict=True)):
        if len(members) != len(params) or {id(p) for p in members} != {id(p) for p in params}:
            return None
    states = [optimizer.state.get(p) for p in params]
    if any(states) and (not all(states) or len({float(s["step"]) for s in states}) > 1):
        return None
    if cache.learner is None:
        cache.learner = FusedLearner(agent)
    return cache.learner, params


def check_finite(values: torch.Tensor) -> None:
    """Raise, before anything is copied back to the agent, if a loss or gradient norm is NaN or inf."""
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = values[~finite][0].item()
        raise NonFiniteLossError(f"the loss or its gradient norm became {bad} (the weights were left unchanged)")


# ----- the algorithms' fused updates ------------------------------------------------------------
def actor_critic_gradient(
    fused: FusedLearner,
    obs: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    weight: torch.Tensor,
    returns: torch.Tensor,
    *,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Fill ``fused.grad`` with the gradient of ``−Σ w·log π·A + vf_coef · ½Σ w(V − R)² − ent_coef · Σ w·H``.

    ``weight`` w is the mask over its count (masked means). Returns log π (B,), the entropy
    ((B,), or (1,) for a Gaussian) and V − R (B,) or None without a critic.
    """
    out, inputs = fused.forward(obs)
    log_probs, saved = fused.log_probs(out[0], actions)
    entropy = fused.entropy(saved)
    grad_out = torch.zeros_like(out)
    one_hot = _one_hot(actions, fused.action_dim) if fused.discrete else None
    fused.head_backward(saved, one_hot, -(weight * advantages), weight * ent_coef if ent_coef else None, grad_out[0])
    error = None
    if fused.groups == 2:
        error = out[1, 0] - returns
        torch.mul(error, weight * vf_coef, out=grad_out[1, 0])
    fused.backward(grad_out, inputs)
    return log_probs, entropy, error


def actor_critic_step(
    fused: FusedLearner,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    obs: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    old_log_probs: torch.Tensor,
    *,
    vf_coef: float,
    ent_coef: float,
    max_grad_norm: float,
) -> dict[str, float]:
    """One gradient step on ``−log π · A + vf_coef · ½(V − R)² − ent_coef · H`` (masked means).

    The fused form of :func:`policygrad.algorithms.common.actor_critic_update`'s step; also
    returns the post-update k3 KL on the batch. Inputs are flat (B, ...).
    """
    fused.begin(params, optimizer)
    weight = mask.to(torch.float32)
    weight /= weight.sum().clamp(min=1.0)
    log_probs, entropy, error = actor_critic_gradient(
        fused, obs, actions, advantages, weight, returns, vf_coef=vf_coef, ent_coef=ent_coef
    )
    losses = [-(weight * log_probs * advantages).sum(), (weight * entropy).sum()]
    if error is not None:
        losses.append(0.5 * (weight * error.square()).sum())
    norms = fused.step(max_grad_norm)
    new_log_probs, _ = fused.log_probs(fused.forward(obs)[0][0], actions)
    log_ratio = new_log_probs - old_log_probs
    losses += [norms.square().sum().sqrt(), (weight * (log_ratio.exp() - 1.0 - log_ratio)).sum()]
    values = torch.stack(losses)
    check_finite(values)
    fused.end()
    policy_loss, entropy_mean, *rest = values.tolist()
    metrics = {"policy_loss": policy_loss, "entropy": entropy_mean}
    if error is not None:
        metrics["value_loss"] = rest.pop(0)
    metrics["grad_norm"], metrics["approx_kl"] = rest
    return metrics


def _one_hot(actions: torch.Tensor, n: int) -> torch.Tensor:
    """Feature-major one-hot: (n, B) for actions (B,), or (K, n, B) for (K, B)."""
    return torch.zeros(*actions.shape[:-1], n, actions.shape[-1]).scatter_(-2, actions.unsqueeze(-2), 1.0)


def ppo_gradient(
    fused: FusedLearner,
    obs: torch.Tensor,
    actions: torch.Tensor,
    actions_one_hot: torch.Tensor | None,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    weight: torch.Tensor,
    returns: torch.Tensor,
    *,
    clip: float,
    vf_coef: float,
    ent_coef: float,
    log_ratio_out: torch.Tensor,
    error_out: torch.Tensor,
    grad_out: torch.Tensor,
) -> Any:
    """Fill ``fused.grad`` with the gradient of one minibatch's PPO loss; returns the head's saved values.

    L = −Σ w·min(ρA, clip(ρ, 1 ± ε)A) + vf_coef · ½Σ w(V − R)² − ent_coef · Σ w·H, with
    ``weight`` w the mask over its count (a masked mean). Writes log ρ into ``log_ratio_out``
    and V − R into ``error_out`` (both (B,)); ``grad_out`` (G, action_dim, B) is scratch.
    """
    out, inputs = fused.forward(obs)
    log_probs, saved = fused.log_probs(out[0], actions)
    ratio = torch.sub(log_probs, old_log_probs, out=log_ratio_out).exp()
    # d/dρ of −min(ρA, clip(ρ)A) is −A where the unclipped term is the smaller one, else 0; dρ/dlog π = ρ
    unclipped_smaller = (ratio * advantages) <= (ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
    grad_log_probs = (weight * advantages).mul_(ratio).mul_(unclipped_smaller).neg_()
    fused.head_backward(saved, actions_one_hot, grad_log_probs, weight * ent_coef if ent_coef else None, grad_out[0])
    if fused.groups == 2:
        torch.mul(torch.sub(out[1, 0], returns, out=error_out), weight * vf_coef, out=grad_out[1, 0])
    fused.backward(grad_out, inputs)
    return saved


def ppo_epochs(
    fused: FusedLearner,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cfg: Any,
    generator: torch.Generator,
) -> tuple[dict[str, float], int]:
    """PPO's epochs of clipped-surrogate minibatch steps, fused; the same update as the reference.

    The same minibatches in the same order (the same generator draws the same permutations),
    each taking one step on ``L_clip + vf_coef · L_V − ent_coef · H``. The minibatches of all
    epochs are gathered up front, and the metrics (each minibatch's values before its step,
    averaged) are computed once at the end. Returns the metrics and the number of epochs run.
    """
    batch, size, epochs = mask.shape[0], cfg.minibatch_size, cfg.update_epochs
    rows = epochs * (batch // size)  # minibatches, all epochs
    clip = cfg.clip_coef
    order = torch.stack([torch.randperm(batch, generator=generator) for _ in range(epochs)]).view(rows, size)
    weight = mask.to(torch.float32)[order]
    counts = weight.sum(1)
    valid = [i for i, n in enumerate(counts.tolist()) if n > 0]  # the reference skips empty minibatches
    weight /= counts.clamp(min=1.0).unsqueeze(1)
    adv = advantages[order]
    if cfg.normalize_advantages:
        mean = (adv * weight).sum(1, keepdim=True)
        adv = (adv - mean) / (((adv - mean).square() * weight).sum(1, keepdim=True).sqrt() + 1e-8)
    mb_obs, mb_actions, mb_old, mb_returns = obs[order], actions[order], old_log_probs[order], returns[order]
    mb_one_hot = _one_hot(mb_actions, fused.action_dim) if fused.discrete else None
    # What the metrics need, per minibatch row, written as the steps go.
    log_ratios, errors = torch.zeros(rows, size), torch.zeros(rows, size)
    entropy_inputs = (
        torch.zeros(rows, fused.action_dim, size) if fused.discrete else torch.zeros(rows, fused.action_dim)
    )
    norms = torch.zeros(rows, fused.groups)
    grad_out = torch.zeros(fused.groups, fused.action_dim, size)
    per_epoch = batch // size
    fused.begin(params, optimizer)
    done_rows = rows
    for i in valid:
        saved = ppo_gradient(
            fused,
            mb_obs[i],
            mb_actions[i],
            mb_one_hot[i] if mb_one_hot is not None else None,
            mb_old[i],
            adv[i],
            weight[i],
            mb_returns[i],
            clip=clip,
            vf_coef=cfg.vf_coef,
            ent_coef=cfg.ent_coef,
            log_ratio_out=log_ratios[i],
            error_out=errors[i],
            grad_out=grad_out,
        )
        entropy_inputs[i] = saved if fused.discrete else fused.log_std
        norms[i] = fused.step(cfg.max_grad_norm)
        if cfg.target_kl is not None and (i + 1) % per_epoch == 0:
            epoch = slice(i + 1 - per_epoch, i + 1)
            epoch_valid = [j for j in valid if epoch.start <= j < epoch.stop]
            kl = (weight[epoch] * (log_ratios[epoch].exp() - 1.0 - log_ratios[epoch])).sum()
            if epoch_valid and kl.item() / len(epoch_valid) > cfg.target_kl:
                done_rows = i + 1
                break
    valid = [i for i in valid if i < done_rows]
    taken = slice(0, done_rows)
    weight, adv, log_ratios, errors = weight[taken], adv[taken], log_ratios[taken], errors[taken]
    ratio = log_ratios.exp()
    if fused.discrete:
        entropy = -(entropy_inputs[taken].exp() * entropy_inputs[taken]).sum(1)
    else:
        entropy = (entropy_inputs[taken] + (0.5 + LOG_SQRT_2PI)).sum(1, keepdim=True)
    sums = torch.stack(
        [
            -(weight * torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)).sum(),
            (weight * ((ratio - 1.0) - log_ratios)).sum(),
            (weight * ((ratio - 1.0).abs() > clip)).sum(),
            0.5 * (weight * errors.square()).sum(),
            (weight * entropy).sum(),
            norms[taken].square().sum(1).sqrt().sum(),
        ]
    )
    check_finite(sums)
    fused.end()
    names = ["policy_loss", "approx_kl", "clip_fraction", "value_loss", "entropy", "grad_norm"]
    steps = max(len(valid), 1)
    return {name: value / steps for name, value in zip(names, sums.tolist(), strict=True)}, -(-done_rows // per_epoch)
