"""Which agents the fused layout can hold: policygrad's plain MLP agents, and in which parameter order."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: The activations whose derivative the written-out backward pass knows.
ACTIVATIONS = ("tanh", "relu")


def linears(seq: nn.Module | None) -> list[nn.Linear]:
    """The linear layers of an ``nn.Sequential`` MLP (none for a missing critic)."""
    return [] if seq is None else [m for m in seq if isinstance(m, nn.Linear)]


def agent_refusal(agent: Any) -> str | None:
    """Why the layout cannot hold this agent, or None when it can. Served: policygrad's MLP agents over flat
    observations (no image encoder, no LSTM core) with tanh or ReLU, float32 on CPU, every parameter trained."""
    spec = getattr(agent, "spec", None)
    if spec is None or not hasattr(agent, "actor"):
        return "not a policygrad MLP agent"
    if getattr(agent, "core", None) is not None:
        return "recurrent policy (policy=lstm: it holds MLPs only; the LSTM trains under autograd)"
    if getattr(agent, "encoder", None) is not None:
        return "image observations (it holds MLPs only; the CNN encoder trains under autograd)"
    if spec.kind not in ("discrete", "box") or getattr(spec, "masked", False):
        return "action masks" if spec.kind in ("discrete", "box") else f"{spec.kind} actions (it serves Discrete, Box)"
    if spec.activation not in ACTIVATIONS:
        return f"activation {spec.activation} (it serves {', '.join(ACTIVATIONS)})"
    actor, critic = linears(agent.actor), linears(agent.critic)
    depth = len(spec.hidden_sizes) + 1
    if len(actor) != depth or len(critic) != (depth if spec.critic else 0):
        return "the networks are not plain MLPs"
    params = _layout_order(agent, actor, critic)
    if len(params) != sum(1 for _ in agent.parameters()):
        return "the agent has parameters outside its MLPs"
    if not all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params):
        return "parameters are not float32 on the CPU"
    if not all(p.requires_grad for p in params):
        return "some parameters are frozen"
    return None


def agent_parameters(agent: Any) -> list[nn.Parameter] | None:
    """The agent's parameters in layout order, or None if the layout cannot hold it (:func:`agent_refusal`).

    Order: the actor's (weight, bias) per layer, the critic's, then ``log_std``.
    """
    if agent_refusal(agent) is not None:
        return None
    return _layout_order(agent, linears(agent.actor), linears(agent.critic))


def _layout_order(agent: Any, actor: list[nn.Linear], critic: list[nn.Linear]) -> list[nn.Parameter]:
    params = [p for layer in actor + critic for p in (layer.weight, layer.bias)]
    return params if agent.spec.discrete else [*params, agent.log_std]
