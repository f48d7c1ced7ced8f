"""The fused actor-critic: the rollout's and the update's hot paths in a few large tensor ops.

Why it exists: at policy-gradient scale (MLPs of 64 units, batches of 8 to 1,024) an
eager torch op costs microseconds of fixed overhead whatever its size, and one autograd
forward/backward + per-network clipping + Adam step is about 150 of them. This module
computes the same mathematics in about 45:

- the agent's parameters live in one flat buffer — the ``nn.Parameter`` s are views of
  it, so the module, its ``state_dict`` and autograd see nothing unusual — laid out so
  that at every layer the actor's and the critic's weights form one (2, out, in) tensor,
  and one ``baddbmm`` evaluates both networks (the critic's 1-unit head is zero-padded
  to the actor's width);
- the backward pass is written out — the chain rule through the MLPs, the clipped
  surrogate, the value loss and the entropy — instead of recorded by autograd;
- gradients and Adam's moments are flat buffers too (the optimiser's state tensors are
  views of them), so per-network clipping is one matrix-vector product and Adam one
  fused kernel;
- tanh, unusually slow in float32 on some CPUs, is computed as 2σ(2x) − 1 on large
  batches (the same function up to float32 rounding).

The reference is the autograd path it replaces: :func:`policygrad.algorithms.ppo.update`
and :func:`policygrad.algorithms.common.actor_critic_update` with ``fused=False`` use
autograd and the optimiser's own ``step``, and ``tests/test_fast.py`` checks that both
agree up to float rounding (losses and gradients against autograd, parameters after
whole updates, sampled actions against the distributions API). Both paths read and
write the same parameters and optimiser state, so they can alternate within a run, and
checkpoints and exact resume are unaffected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.autograd.graph import increment_version

from policygrad import small_batch
from policygrad.errors import NonFiniteLossError
from policygrad.optim import Adam

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# From this many elements on, 2σ(2x) − 1 (three cheap ops) beats one float32 tanh.
SIGMOID_TANH_MIN_ELEMENTS = 16384
ACTIVATIONS = ("tanh", "relu")


# ----- which agents and optimisers the fused path serves ----------------------------------------
def _linears(seq: nn.Module | None) -> list[nn.Linear]:
    return [] if seq is None else [m for m in seq if isinstance(m, nn.Linear)]


def agent_parameters(agent: Any) -> list[nn.Parameter] | None:
    """The agent's parameters in fused-layout order, or None if the fused path cannot serve it.

    Served: policygrad's MLP agents with tanh or ReLU, float32 on CPU, every parameter trained.
    Order: the actor's (weight, bias) per layer, the critic's, then ``log_std``.
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


def _activate(x: torch.Tensor, activation: str, doubled: bool) -> torch.Tensor:
    """The activation, in place on a fresh pre-activation (computed doubled when tanh goes through σ)."""
    if activation == "relu":
        return x.relu_()
    if doubled:  # tanh(x) = 2σ(2x) − 1
        return x.sigmoid_().mul_(2.0).sub_(1.0)
    return x.tanh_()


def _activation_backward(grad: torch.Tensor, output: torch.Tensor, activation: str) -> torch.Tensor:
    """The gradient through the activation, from its output: (1 − y²) for tanh, [y > 0] for ReLU."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad, output, 0.0)
    return torch.ops.aten.tanh_backward(grad, output)


class FusedAgent:
    """An agent's parameters in one flat buffer, and the fused hot paths that use it.

    G is 2 networks with a critic (actor, critic), else 1. Each piece is a contiguous view:

    =============  =============  =================================================
    piece          shape          holds
    =============  =============  =================================================
    layer 0        (G·h₁, obs)    the actor's first weight, then the critic's
    its bias       (G·h₁,)
    layer l ≥ 1    (G, out, in)   one (out, in) weight per network
    its bias       (G, out)
    output layer   (G, A, h_L)    the critic's single unit in row 0 of its block
    its bias       (G, A)
    log_std        (A,)           Gaussian policies only
    =============  =============  =================================================

    The rollout evaluates batch-major (activations (G, B, h)); the update feature-major
    ((G, h, B)), so that every matmul of the backward pass has a wide output — CPU BLAS is
    slow on outputs a few columns wide.
    """

    def __init__(self, agent: Any) -> None:
        spec = agent.spec
        self.discrete, self.action_dim, self.activation = spec.discrete, spec.action_dim, spec.activation
        self.groups = 2 if spec.critic else 1
        self.sizes = [spec.obs_dim, *spec.hidden_sizes, spec.action_dim]
        g, sizes = self.groups, self.sizes
        self.size = g * (sizes[1] * sizes[0] + sizes[1])
        self.size += sum(g * (o * i + o) for i, o in zip(sizes[1:-1], sizes[2:], strict=True))
        self.size += 0 if spec.discrete else spec.action_dim
        self.params = torch.zeros(self.size)
        self.weights, self.biases = self._pieces(self.params)
        self.log_std = self.params[-spec.action_dim :] if not spec.discrete else None
        self.param_views = self._param_views(self.params)
        self.width = g * max(spec.hidden_sizes)
        # The rollout's weights, batch-major: layer 0 as (obs, G·h₁), later layers block-diagonal
        # (G·in, G·out), so each layer is one addmm for both networks. Copied from the buffer by
        # refresh() whenever the parameters changed; the biases are views of the buffer.
        self.rollout_weights = [torch.zeros(sizes[0], g * sizes[1])]
        self.rollout_blocks = []
        for fan_in, fan_out in zip(sizes[1:-1], sizes[2:], strict=True):
            block_diagonal = torch.zeros(g * fan_in, g * fan_out)
            self.rollout_weights.append(block_diagonal)
            # The (G, in, out) diagonal blocks, as a view.
            self.rollout_blocks.append(
                block_diagonal.view(g, fan_in, g, fan_out).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
            )
        self.rollout_biases = [b.reshape(-1) for b in self.biases]
        self.rollout_hidden = list(zip(self.rollout_weights[:-1], self.rollout_biases[:-1], strict=True))
        self.versions: tuple[int, ...] = ()
        # Feature-major views for the update: (G·h₁, 1) and (G, out, 1) biases; the actor's alone too.
        self.bias_cols = [b.unsqueeze(-1) for b in self.biases]
        self.layers = list(zip(self.weights, self.bias_cols, strict=True))
        h1 = spec.hidden_sizes[0]
        self.actor_layers = [(self.weights[0][:h1], self.bias_cols[0][:h1])]
        self.actor_layers += [(w[:1], b[:1]) for w, b in self.layers[1:]]
        self.grad: torch.Tensor | None = None  # the update's buffers, allocated on first use
        self.numpy_views: Any = None  # policygrad.small_batch's views of the buffers, made on first use

    def _pieces(self, buffer: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        g, sizes, offset = self.groups, self.sizes, 0

        def take(n: int) -> torch.Tensor:
            nonlocal offset
            offset += n
            return buffer[offset - n : offset]

        weights = [take(g * sizes[1] * sizes[0]).view(g * sizes[1], sizes[0])]
        biases = [take(g * sizes[1])]
        for fan_in, fan_out in zip(sizes[1:-1], sizes[2:], strict=True):
            weights.append(take(g * fan_out * fan_in).view(g, fan_out, fan_in))
            biases.append(take(g * fan_out).view(g, fan_out))
        return weights, biases

    def _param_views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """Contiguous views of ``buffer`` shaped like the agent's parameters, in :func:`agent_parameters` order."""
        weights, biases = self._pieces(buffer)
        h = self.sizes[1]
        out = []
        for net in range(self.groups):
            out += [weights[0][net * h : (net + 1) * h], biases[0][net * h : (net + 1) * h]]
            for layer, (w, b) in enumerate(zip(weights[1:], biases[1:], strict=True)):
                rows = 1 if net == 1 and layer == len(weights) - 2 else w.shape[1]  # the critic's 1-unit head
                out += [w[net, :rows], b[net, :rows]]
        if not self.discrete:
            out.append(buffer[-self.action_dim :])
        return out

    # ----- the parameters are views of the buffer ----------------------------------------------
    def owns(self, params: list[nn.Parameter]) -> bool:
        """Whether every parameter is (still) its view of the flat buffer."""
        return all(p.data_ptr() == v.data_ptr() for p, v in zip(params, self.param_views, strict=True))

    @torch.no_grad()
    def adopt(self, params: list[nn.Parameter]) -> None:
        """Copy the parameters' values into the buffer and make each parameter its view."""
        for p, view in zip(params, self.param_views, strict=True):
            view.copy_(p)
            p.data = view

    # ----- the rollout: one batch-major forward per vector step --------------------------------
    @torch.no_grad()
    def refresh(self, params: list[nn.Parameter]) -> None:
        """Re-read the rollout's weights if a parameter changed in place since the last read.

        Optimiser steps, ``load_state_dict`` and in-place ops under ``no_grad`` count; writes
        through ``.data`` bypass version counters — call :func:`invalidate` after those.
        """
        versions = (self.params._version, *(p._version for p in params))
        if versions == self.versions:
            return
        self.rollout_weights[0].copy_(self.weights[0].t())
        for block, weight in zip(self.rollout_blocks, self.weights[1:], strict=True):
            block.copy_(weight.transpose(1, 2))
        self.versions = (self.params._version, *(p._version for p in params))

    def infer(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Policy outputs (B, action_dim) — logits or means — and values (B,) or None, without autograd.

        Reads the weights :meth:`refresh` copied last (:func:`policy` refreshes them).
        """
        out = self._forward_rows(obs)
        return out[:, : self.action_dim], (out[:, self.action_dim] if self.groups == 2 else None)

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) (B,) without autograd: the values :meth:`sample` returns, without sampling."""
        return self._forward_rows(obs)[:, self.action_dim]

    def _forward_rows(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, action_dim [+ 1]): the actor's outputs, then the value. Straight-line: this runs every env step."""
        h = obs
        if self.activation == "tanh" and obs.shape[0] * self.width < SIGMOID_TANH_MIN_ELEMENTS:
            for weight, bias in self.rollout_hidden:
                h = torch.addmm(bias, h, weight).tanh_()
        else:
            doubled = self.activation == "tanh"
            scale = 2.0 if doubled else 1.0
            for weight, bias in self.rollout_hidden:
                h = _activate(torch.addmm(bias, h, weight, beta=scale, alpha=scale), self.activation, doubled)
        return torch.addmm(self.rollout_biases[-1], h, self.rollout_weights[-1])

    def draw(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`sample` in the fewest tensor ops, for the rollout: ``(actions, log_probs, outputs)``.

        Discrete: ``noise`` (B, 1) uniforms; actions and log-probs come as (B, 1) columns.
        Boxes: ``noise`` (B, action_dim) normals; actions (B, action_dim), log-probs (B,).
        ``outputs`` (B, action_dim [+ 1]) holds the policy's outputs, then the value.
        """
        out = self._forward_rows(obs)
        a = self.action_dim
        if self.discrete:
            log_probs_all = torch.log_softmax(out[:, :a], dim=-1)
            # Inverse-CDF sampling: the number of cdf entries <= u, clamped for rounding at the top.
            actions = torch.searchsorted(log_probs_all.exp().cumsum_(-1), noise, right=True).clamp_(max=a - 1)
            return actions, log_probs_all.gather(-1, actions), out
        actions = torch.addcmul(out[:, :a], self.log_std.exp(), noise)
        log_probs = (noise.square().mul_(-0.5) - (self.log_std + LOG_SQRT_2PI)).sum(-1)
        return actions, log_probs, out

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Actions, log-probs and values from pre-drawn noise (see :meth:`Agent.sample`)."""
        if self.discrete:
            actions, log_probs, out = self.draw(obs, noise.unsqueeze(-1))
            actions, log_probs = actions.squeeze_(-1), log_probs.squeeze_(-1)
        else:
            actions, log_probs, out = self.draw(obs, noise)
        return actions, log_probs, (out[:, self.action_dim] if self.groups == 2 else None)

    # ----- the update: buffers for gradients and Adam, views as the optimiser's state -----------
    def _learning_buffers(self) -> None:
        g = self.groups
        self.grad = torch.zeros(self.size)
        self.grad_weights, self.grad_biases = self._pieces(self.grad)
        self.grad_log_std = self.grad[-self.action_dim :] if not self.discrete else None
        self.exp_avg, self.exp_avg_sq = torch.zeros(self.size), torch.zeros(self.size)
        self.exp_avg_views, self.exp_avg_sq_views = self._param_views(self.exp_avg), self._param_views(self.exp_avg_sq)
        self.steps = torch.zeros(len(self.param_views))  # Adam's step count per parameter
        self.step_views = list(self.steps.unbind())
        self.step_tensor = torch.zeros(())
        self.saved = torch.zeros(3, self.size)  # parameters and moments at the start of an update
        # segments[g] is 1 on network g's entries: per-network squared norms are one matrix-vector product.
        self.segments = torch.zeros(g, self.size)
        per_net = 2 * (len(self.sizes) - 1)  # a weight and a bias per layer
        nets = [0] * per_net + ([1] * per_net if g == 2 else []) + ([] if self.discrete else [0])
        for row in range(g):
            for view, net in zip(self._param_views(self.segments[row]), nets, strict=True):
                if net == row:
                    view.fill_(1.0)

    @torch.no_grad()
    def adopt_optimizer(self, params: list[nn.Parameter], optimizer: Any) -> None:
        """Make the optimiser's ``step``, ``exp_avg`` and ``exp_avg_sq`` views of the flat buffers.

        Their values are copied in (zeros for a fresh optimiser, as Adam initialises them).
        """
        if self.grad is None:
            with torch.inference_mode(False):
                self._learning_buffers()
        state = optimizer.state
        if all(
            (s := state.get(p)) is not None
            and s.get("exp_avg") is m
            and s.get("exp_avg_sq") is v
            and s.get("step") is t
            for p, m, v, t in zip(params, self.exp_avg_views, self.exp_avg_sq_views, self.step_views, strict=True)
        ):
            return
        for i, p in enumerate(params):
            s = state[p]
            if s:
                self.exp_avg_views[i].copy_(s["exp_avg"])
                self.exp_avg_sq_views[i].copy_(s["exp_avg_sq"])
                self.step_views[i].copy_(s["step"])
            else:
                self.exp_avg_views[i].zero_(), self.exp_avg_sq_views[i].zero_(), self.step_views[i].zero_()
            s["step"], s["exp_avg"], s["exp_avg_sq"] = (
                self.step_views[i],
                self.exp_avg_views[i],
                self.exp_avg_sq_views[i],
            )

    def begin(self, params: list[nn.Parameter], optimizer: Any) -> None:
        """Start an update: adopt the optimiser's state, read its hyperparameters, keep a copy to restore."""
        self.adopt_optimizer(params, optimizer)
        group = optimizer.param_groups[0]
        self.lr, (self.beta1, self.beta2), self.eps = float(group["lr"]), group["betas"], group["eps"]
        torch.stack([self.params, self.exp_avg, self.exp_avg_sq], out=self.saved)
        self.step_tensor.copy_(self.steps[0])
        self.taken = 0

    def end(self) -> None:
        """Finish an update: count its steps in the optimiser's state, and the writes of the fused kernel."""
        self.steps.add_(self.taken)
        increment_version([self.params, self.exp_avg, self.exp_avg_sq])

    def restore(self) -> None:
        """Undo the update: parameters and moments as :meth:`begin` found them."""
        self.params.copy_(self.saved[0]), self.exp_avg.copy_(self.saved[1]), self.exp_avg_sq.copy_(self.saved[2])
        increment_version([self.params, self.exp_avg, self.exp_avg_sq])

    # ----- the update's network pass, feature-major --------------------------------------------
    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Outputs (G, action_dim, B) for observations (B, obs): row 0 the actor's, row 1 the critic's
        (the value in its column 0); also the layer inputs the backward pass needs."""
        return self._forward_columns(obs, self.layers)

    def actor_forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The actor's outputs (action_dim, B) alone, at half :meth:`forward`'s work.

        Bit for bit ``forward(obs)[0][0]`` for B ≥ 2 (one column takes another BLAS kernel).
        """
        return self._forward_columns(obs, self.actor_layers)[0][0]

    def _forward_columns(
        self, obs: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The feature-major pass through ``layers`` (both networks', or the actor's alone)."""
        x = obs.t()
        # The activation's form follows the fused width whichever networks run, so that the
        # actor alone computes exactly what it computes beside the critic.
        doubled = self.activation == "tanh" and obs.shape[0] * self.width >= SIGMOID_TANH_MIN_ELEMENTS
        scale = 2.0 if doubled else 1.0
        (weight, bias), *hidden, (head, head_bias) = layers
        h = torch.addmm(bias, weight, x, beta=scale, alpha=scale)
        inputs = [x, _activate(h, self.activation, doubled).view(head.shape[0], -1, x.shape[1])]
        for weight, bias in hidden:
            h = torch.baddbmm(bias, weight, inputs[-1], beta=scale, alpha=scale)
            inputs.append(_activate(h, self.activation, doubled))
        return torch.baddbmm(head_bias, head, inputs[-1]), inputs

    def backward(self, grad_out: torch.Tensor, inputs: list[torch.Tensor]) -> None:
        """Fill the gradient buffer from dLoss/d(outputs) (G, action_dim, B); log_std is the caller's."""
        delta = grad_out
        for layer in range(len(self.weights) - 1, 0, -1):
            torch.bmm(delta, inputs[layer].transpose(1, 2), out=self.grad_weights[layer])
            torch.sum(delta, -1, out=self.grad_biases[layer])
            dh = torch.bmm(self.weights[layer].transpose(1, 2), delta)
            delta = _activation_backward(dh, inputs[layer], self.activation)
        delta = delta.view(-1, delta.shape[-1])
        # (obs, B) @ (B, G·h₁), then transposed into place: a wide output, unlike (G·h₁, B) @ (B, obs).
        self.grad_weights[0].copy_(torch.mm(inputs[0], delta.t()).t())
        torch.sum(delta, -1, out=self.grad_biases[0])

    def step(self, max_grad_norm: float) -> torch.Tensor:
        """Clip each network's gradient to ``max_grad_norm`` and take one Adam step.

        Returns the per-network gradient norms before clipping, (G,). Clipping is
        ``clip_grad_norm_``'s, per network; the step is Adam's (torch's fused kernel).
        """
        grad = self.grad
        norms = torch.mv(self.segments, grad.square()).sqrt_()
        if max_grad_norm > 0:
            grad.mul_(torch.mv(self.segments.t(), (max_grad_norm / (norms + 1e-6)).clamp_(max=1.0)))
        self.adam_step()
        return norms

    def adam_step(self) -> None:
        """One Adam step (torch's fused kernel) from the gradient buffer, clipped or not."""
        self.taken += 1
        self.step_tensor += 1
        torch._fused_adam_(
            [self.params],
            [self.grad],
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


@dataclass
class _Cache:
    """Per-agent state of the fused paths (never copied or pickled with the agent)."""

    params: list[nn.Parameter] | None = None
    fused: FusedAgent | None = None
    stale: bool = True

    def __deepcopy__(self, memo: dict[int, Any]) -> None:
        return None

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(None), ())


def policy(agent: Any) -> FusedAgent | None:
    """The agent's fused form, ready to :meth:`~FusedAgent.sample` (None where it does not apply)."""
    fused = _fused(agent)
    if fused is not None:
        fused.refresh(agent.__dict__["_fused_cache"].params)
    return fused


def _fused(agent: Any) -> FusedAgent | None:
    """The agent's fused form, its parameters views of its flat buffer (None where it does not apply)."""
    cache = agent.__dict__.get("_fused_cache")
    if cache is None:
        cache = agent.__dict__["_fused_cache"] = _Cache()
    if cache.stale:
        cache.params, cache.stale = agent_parameters(agent), False
    if cache.params is None:
        return None
    fused = cache.fused
    if fused is None or not fused.owns(cache.params):
        with torch.inference_mode(False):  # the buffers are the parameters: never inference tensors
            if fused is None:
                fused = cache.fused = FusedAgent(agent)
            fused.adopt(cache.params)
    return fused


def invalidate(agent: Any) -> None:
    """Re-read the agent's parameters on next use (after they were replaced, moved, cast or written via ``.data``)."""
    cache = agent.__dict__.get("_fused_cache")
    if cache is not None:
        cache.stale = True
        if cache.fused is not None:
            cache.fused.versions = ()


def learner(agent: Any, optimizer: Any) -> tuple[FusedAgent, list[nn.Parameter]] | None:
    """The agent's fused form and its parameters, ready to update, or None where the fused path does not apply.

    It applies to policygrad MLP agents (see :func:`agent_parameters`) trained by a plain Adam,
    :class:`policygrad.optim.Adam` or ``torch.optim.Adam`` (one parameter group holding exactly
    the agent's parameters, no weight decay, AMSGrad or maximise, equal step counts).
    """
    if type(optimizer) not in (torch.optim.Adam, Adam) or len(optimizer.param_groups) != 1:
        return None
    fused = _fused(agent)
    if fused is None:
        return None
    params = agent.__dict__["_fused_cache"].params
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
    if fused.grad is None or optimizer.state.get(params[0], {}).get("step") is not fused.step_views[0]:
        states = [optimizer.state.get(p) for p in params]
        if any(states) and (not all(states) or len({float(s["step"]) for s in states}) > 1):
            return None
    return fused, params


def check_finite(fused: FusedAgent, values: list[float]) -> None:
    """If a loss or gradient norm is NaN or inf, undo the update and raise."""
    if not all(math.isfinite(v) for v in values):
        fused.restore()
        bad = next(v for v in values if not math.isfinite(v))
        raise NonFiniteLossError(f"the loss or its gradient norm became {bad} (the weights were left unchanged)")


# ----- the algorithms' fused updates ------------------------------------------------------------
def actor_critic_gradient(
    fused: FusedAgent,
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
    fused: FusedAgent,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    obs: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    old_log_probs: torch.Tensor,
    old_values: torch.Tensor,
    *,
    vf_coef: float,
    ent_coef: float,
    max_grad_norm: float,
) -> dict[str, float]:
    """One gradient step on ``−log π · A + vf_coef · ½(V − R)² − ent_coef · H`` (masked means).

    The fused form of :func:`policygrad.algorithms.common.actor_critic_update`'s step; also
    returns the post-update k3 KL on the batch and, with a critic, the explained variance of
    the values at collection (``old_values``). Inputs are flat (B, ...). Small batches
    (:func:`policygrad.small_batch.serves`) take the same step in numpy.
    """
    if small_batch.serves(fused, obs.shape[0]):
        batch = (obs, actions, advantages, returns, mask, old_log_probs, old_values)
        coefs = dict(vf_coef=vf_coef, ent_coef=ent_coef, max_grad_norm=max_grad_norm)
        return small_batch.actor_critic_step(fused, params, optimizer, *batch, **coefs)
    fused.begin(params, optimizer)
    count = float(torch.count_nonzero(mask))
    weight = torch.where(mask, 1.0, 0.0).div_(max(count, 1.0))
    log_probs, entropy, error = actor_critic_gradient(
        fused, obs, actions, advantages, weight, returns, vf_coef=vf_coef, ent_coef=ent_coef
    )
    norms = fused.step(max_grad_norm)
    new_log_probs, _ = fused.log_probs(fused.actor_forward(obs), actions)
    log_ratio = new_log_probs - old_log_probs
    # Every metric is a masked mean: one matrix-vector product with the weights.
    rows = [log_probs * advantages, entropy.expand_as(log_probs), torch.expm1(log_ratio) - log_ratio]
    if error is not None:
        rows += [error.square(), returns - old_values, returns]
    stacked = torch.stack(rows)
    means = torch.mv(stacked, weight)
    parts = [means]
    if error is not None:  # two-pass variances of R − V and R: exactly 0 for constant returns
        parts.append(torch.mv((stacked[4:] - means[4:, None]).square_(), weight))
    values = torch.cat([*parts, norms]).tolist()
    check_finite(fused, values)
    fused.end()
    return actor_critic_metrics(values, len(rows), error is not None)


def actor_critic_metrics(values: list[float], num_rows: int, critic: bool) -> dict[str, float]:
    """The metrics of an actor-critic step from its reduced values.

    ``values``: the masked means of the ``num_rows`` metric rows (log π·A, entropy, k3 KL,
    then with a critic (V − R)², R − V_old, R), with a critic the variances of the last two,
    then the per-network gradient norms.
    """
    metrics = {"policy_loss": -values[0], "entropy": values[1]}
    if critic:
        metrics["value_loss"] = 0.5 * values[3]
        # 1 − Var[R − V] / Var[R], V the values at collection (as losses.explained_variance)
        var_error, var_returns = values[6], values[7]
        metrics["explained_variance"] = 1.0 - var_error / var_returns if var_returns > 0.0 else math.nan
        values = values[:6] + values[8:]
    metrics["grad_norm"] = math.sqrt(sum(v * v for v in values[num_rows:]))
    metrics["approx_kl"] = values[2]  # k3: E[(ρ − 1) − log ρ]
    return metrics


def _one_hot(actions: torch.Tensor, n: int) -> torch.Tensor:
    """Feature-major one-hot: (n, B) for actions (B,), or (K, n, B) for (K, B)."""
    return torch.zeros(*actions.shape[:-1], n, actions.shape[-1]).scatter_(-2, actions.unsqueeze(-2), 1.0)


@dataclass
class PPOWeights:
    """Per-sample factors of the PPO loss's gradient, computed once for every minibatch of an update.

    With w the mask over its count (a masked mean) and A the advantages: ``neg_weighted_adv``
    = −w·A; ``signs`` = ±1 as A ≥ 0 or < 0 and ``signed_bounds`` = signs · (1 ± ε), so that the
    unclipped term of min(ρA, clip(ρ)A) is the smaller one exactly where signs · ρ ≤ signed_bounds;
    ``value_weights`` = vf_coef · w; ``entropy_weights`` = ent_coef · w (None when ent_coef = 0).
    """

    neg_weighted_adv: torch.Tensor
    signs: torch.Tensor
    signed_bounds: torch.Tensor
    value_weights: torch.Tensor
    entropy_weights: torch.Tensor | None

    @classmethod
    def of(
        cls, advantages: torch.Tensor, weight: torch.Tensor, clip: float, vf_coef: float, ent_coef: float
    ) -> PPOWeights:
        positive = advantages >= 0
        signs = torch.where(positive, 1.0, -1.0)
        signed_bounds = torch.where(positive, 1.0 + clip, -(1.0 - clip))
        entropy = weight * ent_coef if ent_coef else None
        return cls(-(weight * advantages), signs, signed_bounds, weight * vf_coef, entropy)

    def __getitem__(self, i: int) -> PPOWeights:
        e = self.entropy_weights
        return PPOWeights(
            self.neg_weighted_adv[i],
            self.signs[i],
            self.signed_bounds[i],
            self.value_weights[i],
            None if e is None else e[i],
        )


def ppo_gradient(
    fused: FusedAgent,
    obs: torch.Tensor,
    actions: torch.Tensor,
    actions_one_hot: torch.Tensor | None,
    old_log_probs: torch.Tensor,
    returns: torch.Tensor,
    weights: PPOWeights,
    *,
    log_ratio_out: torch.Tensor,
    error_out: torch.Tensor,
    grad_out: torch.Tensor,
) -> Any:
    """Fill ``fused.grad`` with the gradient of one minibatch's PPO loss; returns the head's saved values.

    L = −Σ w·min(ρA, clip(ρ, 1 ± ε)A) + vf_coef · ½Σ w(V − R)² − ent_coef · Σ w·H, the
    factors in ``weights`` (:class:`PPOWeights`). Writes log ρ into ``log_ratio_out`` and V − R
    into ``error_out`` (both (B,)); ``grad_out`` (G, action_dim, B) is scratch.
    """
    out, inputs = fused.forward(obs)
    log_probs, saved = fused.log_probs(out[0], actions)
    ratio = torch.sub(log_probs, old_log_probs, out=log_ratio_out).exp()
    # d/dρ of −min(ρA, clip(ρ)A) is −A where the unclipped term is the smaller one, else 0; dρ/dlog π = ρ
    unclipped_smaller = (ratio * weights.signs) <= weights.signed_bounds
    grad_log_probs = weights.neg_weighted_adv.mul(ratio).mul_(unclipped_smaller)
    fused.head_backward(saved, actions_one_hot, grad_log_probs, weights.entropy_weights, grad_out[0])
    if fused.groups == 2:
        torch.mul(torch.sub(out[1, 0], returns, out=error_out), weights.value_weights, out=grad_out[1, 0])
    fused.backward(grad_out, inputs)
    return saved


def ppo_epochs(
    fused: FusedAgent,
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
    weights = PPOWeights.of(adv, weight, clip, cfg.vf_coef, cfg.ent_coef)
    for i in valid:
        saved = ppo_gradient(
            fused,
            mb_obs[i],
            mb_actions[i],
            mb_one_hot[i] if mb_one_hot is not None else None,
            mb_old[i],
            mb_returns[i],
            weights[i],
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
            (weight * (torch.expm1(log_ratios) - log_ratios)).sum(),
            (weight * ((ratio - 1.0).abs() > clip)).sum(),
            0.5 * (weight * errors.square()).sum(),
            (weight * entropy).sum(),
            norms[taken].square().sum(1).sqrt().sum(),
        ]
    )
    values = sums.tolist()
    check_finite(fused, values)
    fused.end()
    names = ["policy_loss", "approx_kl", "clip_fraction", "value_loss", "entropy", "grad_norm"]
    steps = max(len(valid), 1)
    return {name: value / steps for name, value in zip(names, values, strict=True)}, -(-done_rows // per_epoch)
