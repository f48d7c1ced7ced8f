"""MLP bodies with orthogonal initialisation (the initialisation PPO implementations rely on)."""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


def layer(in_features: int, out_features: int, gain: float) -> nn.Linear:
    """A linear layer with orthogonal weights of the given gain and zero bias."""
    linear = nn.Linear(in_features, out_features)
    nn.init.orthogonal_(linear.weight, gain)
    nn.init.zeros_(linear.bias)
    return linear


def mlp(
    in_features: int, hidden_sizes: tuple[int, ...], out_features: int, activation: str, out_gain: float
) -> nn.Sequential:
    """``in → hidden… → out`` with the activation between layers; hidden gain √2."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    size = in_features
    for hidden in hidden_sizes:
        layers += [layer(size, hidden, math.sqrt(2.0)), act()]
        size = hidden
    layers.append(layer(size, out_features, out_gain))
    return nn.Sequential(*layers)


def torch_default_init(module: nn.Module) -> None:
    """Re-initialise every linear and convolution layer of ``module`` as PyTorch constructs them (Kaiming-uniform
    weights, uniform biases): Stable-Baselines3's ``ortho_init=False``, which the RL zoo's MuJoCo settings use."""
    for layer_ in module.modules():
        if isinstance(layer_, (nn.Linear, nn.Conv2d)):
            layer_.reset_parameters()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["mlp", "layer", "count_parameters", "torch", "torch_default_init"]
