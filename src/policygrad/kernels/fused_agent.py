"""The fused actor-critic layout: an MLP agent's parameters, gradients and Adam moments in flat buffers.

Why it exists: at policy-gradient scale (MLPs of 64 units, batches of 8 to 1,024) an
eager torch op costs microseconds of fixed overhead whatever its size, and one autograd
forward/backward + per-network clipping + Adam step is about 150 of them. The learner
built on this layout (:mod:`policygrad.kernels.fused_mlp`) computes the same step in
about 45:

- the agent's parameters live in one flat buffer — the ``nn.Parameter`` s are views of
  it, so the module, its ``state_dict`` and autograd see nothing unusual — laid out so
  that at every layer the actor's and the critic's weights form one (2, out, in) tensor,
  and one ``baddbmm`` evaluates both networks (the critic's 1-unit head is zero-padded
  to the actor's width);
- the backward pass is written out — the chain rule through the MLPs and the policy
  head — instead of recorded by autograd;
- gradients and Adam's moments are flat buffers too (the optimiser's state tensors are
  views of them), so per-network clipping is one matrix-vector product and Adam one
  fused kernel;
- tanh, unusually slow in float32 on some CPUs, is computed as 2σ(2x) − 1 on large
  batches (the same function up to float32 rounding).

Nothing here knows an algorithm: no advantages, epochs or minibatches.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.autograd.graph import increment_version

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# From this many elements on, 2σ(2x) − 1 (three cheap ops) beats one float32 tanh.
SIGMOID_TANH_MIN_ELEMENTS = 16384


def activate(x: torch.Tensor, activation: str, doubled: bool) -> torch.Tensor:
    """The activation, in place on a fresh pre-activation (computed doubled when tanh goes through σ)."""
    if activation == "relu":
        return x.relu_()
    if doubled:  # tanh(x) = 2σ(2x) − 1
        return x.sigmoid_().mul_(2.0).sub_(1.0)
    return x.tanh_()


def activation_backward(grad: torch.Tensor, output: torch.Tensor, activation: str) -> torch.Tensor:
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
                h = activate(torch.addmm(bias, h, weight, beta=scale, alpha=scale), self.activation, doubled)
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
        # Adopted already (the state holds our views: checked on its first and last parameter).
        ends = ((params[0], 0), (params[-1], -1))
        if all((s := state.get(p)) is not None and s.get("step") is self.step_views[i] for p, i in ends):
            return
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
        """Before a step: adopt the optimiser's state and read its hyperparameters (a schedule may change lr)."""
        self.adopt_optimizer(params, optimizer)
        group = optimizer.param_groups[0]
        self.lr, (self.beta1, self.beta2), self.eps = float(group["lr"]), group["betas"], group["eps"]
        self.step_tensor.copy_(self.steps[0])

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
        inputs = [x, activate(h, self.activation, doubled).view(head.shape[0], -1, x.shape[1])]
        for weight, bias in hidden:
            h = torch.baddbmm(bias, weight, inputs[-1], beta=scale, alpha=scale)
            inputs.append(activate(h, self.activation, doubled))
        return torch.baddbmm(head_bias, head, inputs[-1]), inputs

    def backward(self, grad_out: torch.Tensor, inputs: list[torch.Tensor]) -> None:
        """Fill the gradient buffer from dLoss/d(outputs) (G, action_dim, B); log_std is the caller's."""
        delta = grad_out
        for layer in range(len(self.weights) - 1, 0, -1):
            torch.bmm(delta, inputs[layer].transpose(1, 2), out=self.grad_weights[layer])
            torch.sum(delta, -1, out=self.grad_biases[layer])
            dh = torch.bmm(self.weights[layer].transpose(1, 2), delta)
            delta = activation_backward(dh, inputs[layer], self.activation)
        delta = delta.view(-1, delta.shape[-1])
        # (obs, B) @ (B, G·h₁), then transposed into place: a wide output, unlike (G·h₁, B) @ (B, obs).
        self.grad_weights[0].copy_(torch.mm(inputs[0], delta.t()).t())
        torch.sum(delta, -1, out=self.grad_biases[0])

    def gradient_norms(self) -> torch.Tensor:
        """Each network's gradient norm, (G,): one matrix-vector product over the flat gradient."""
        return torch.mv(self.segments, self.grad.square()).sqrt_()

    def clip_and_step(self, norms: torch.Tensor, max_grad_norm: float, joint: bool = False) -> None:
        """Clip each network's gradient to ``max_grad_norm`` (``clip_grad_norm_``'s rule), or with ``joint`` their
        joint norm (the norm of ``norms``), then one Adam step."""
        if max_grad_norm > 0 and joint:
            self.grad.mul_((max_grad_norm / (torch.linalg.vector_norm(norms) + 1e-6)).clamp_(max=1.0))
        elif max_grad_norm > 0:
            self.grad.mul_(torch.mv(self.segments.t(), (max_grad_norm / (norms + 1e-6)).clamp_(max=1.0)))
        self.adam_step()

    def adam_step(self) -> None:
        """One Adam step (torch's fused kernel) from the gradient buffer, counted in the optimiser's state."""
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
        self.steps.add_(1.0)
        increment_version([self.params, self.exp_avg, self.exp_avg_sq])  # the fused kernel does not count its writes

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
