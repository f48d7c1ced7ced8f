"""Observation encoders: image observations, from the flat observation vector, through a CNN.

Every observation reaches the agent as one flat float vector (Gymnasium's ``spaces.flatten``;
the rollout, Ray shards and checkpoints store nothing else). An agent whose observation space
holds images slices that vector back, in ``gym.spaces.flatten`` order — the contract between
the environment side and the encoder:

- An **image** is a ``uint8`` Box of three dims. Its channel axis is the smaller of the first
  and the last dim (ties: the last), so ``(84, 84, 4)`` and ``(16, 16, 3)`` are H×W×C and
  ``(4, 84, 84)`` and ``(3, 16, 16)`` are C×H×W. It is scaled by 1/255 and goes through a CNN
  (:func:`cnn`), chosen by the image's smaller side.
- Everything else (vectors, one-hot Discrete, MultiBinary, …) goes on as it is.
- A Dict or Tuple: one encoder per key or item, outputs concatenated in flatten order.

One encoder serves actor and critic alike (as Stable-Baselines3 and CleanRL share the
convolutions for pixels): the CNN is most of the compute and most of the parameters, and a
representation trained by both the policy and the value loss learns faster than two. The
encoder's parameters clip with the actor's group; the value loss reaches them through the
shared features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from policygrad.nets import layer
from policygrad.spaces import has_images, is_image

#: (out_channels, kernel, stride, padding) per conv layer, and the smallest image side each stack takes.
NATURE = ((32, 8, 4, 0), (64, 4, 2, 0), (64, 3, 1, 0))  # Mnih et al. 2015, for sides ≥ 36 (Atari's 84)
SMALL = ((32, 3, 1, 0), (64, 3, 2, 0), (64, 3, 1, 0))  # sides 9 … 35: 16 → 14 → 6 → 4
TINY = ((32, 3, 1, 1), (64, 3, 1, 1), (64, 3, 1, 1))  # sides < 9: padded, the image keeps its size
STACKS = ((36, NATURE, 512), (9, SMALL, 256), (1, TINY, 256))  # (min side, convs, linear features)


def channels_first(shape: tuple[int, ...]) -> bool:
    """C×H×W when the first dim is smaller than the last, else H×W×C."""
    return shape[0] < shape[-1]


def chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """An image shape as (channels, height, width)."""
    c, h, w = shape if channels_first(shape) else (shape[2], shape[0], shape[1])
    return int(c), int(h), int(w)


def stack_for(height: int, width: int) -> tuple[tuple[tuple[int, int, int, int], ...], int]:
    """The conv stack and the linear layer's width for an image of this size (:data:`STACKS`)."""
    return next((convs, features) for side, convs, features in STACKS if min(height, width) >= side)


def cnn(shape: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """A NatureCNN-style network for images of ``shape`` (C, H, W) in [0, 1], and its output width.

    Three ReLU convolutions then a ReLU linear layer, orthogonal weights of gain √2 (as
    CleanRL's Atari PPO): Nature's 8×8/4, 4×4/2, 3×3/1 from a side of 36 on; three 3×3
    convolutions (strides 1, 2, 1) for 9 to 35; three padded 3×3/1 below that.
    """
    channels, height, width = shape
    convs, features = stack_for(height, width)
    layers: list[nn.Module] = []
    for out_channels, kernel, stride, padding in convs:
        conv = nn.Conv2d(channels, out_channels, kernel, stride, padding)
        nn.init.orthogonal_(conv.weight, math.sqrt(2.0))
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()]
        channels = out_channels
        height, width = ((n + 2 * padding - kernel) // stride + 1 for n in (height, width))
    layers += [nn.Flatten(), layer(channels * height * width, features, math.sqrt(2.0)), nn.ReLU()]
    return nn.Sequential(*layers), features


@dataclass(frozen=True)
class Piece:
    """A run of the flat vector: an image (its stored shape) or values passed on as they are."""

    start: int
    stop: int
    image_shape: tuple[int, ...] | None = None


def pieces(space: gym.Space, start: int = 0) -> list[Piece]:
    """The flat vector of ``space`` cut into images and runs of other values, in ``gym.spaces.flatten`` order."""
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        subspaces = space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces
        out: list[Piece] = []
        for sub in subspaces:
            for piece in pieces(sub, start):
                if out and piece.image_shape is None and out[-1].image_shape is None:
                    out[-1] = Piece(out[-1].start, piece.stop)  # neighbouring vectors: one run
                else:
                    out.append(piece)
            start = out[-1].stop if out else start
        return out
    stop = start + int(gym.spaces.flatdim(space))
    return [Piece(start, stop, tuple(int(n) for n in space.shape) if is_image(space) else None)]


class Encoder(nn.Module):
    """Flat observations (B, flatdim) → features (B, out_features): images by CNN, the rest as it is."""

    def __init__(self, space: gym.Space) -> None:
        super().__init__()
        self.pieces = pieces(space)
        self.cnns = nn.ModuleList()
        self.out_features = 0
        for piece in self.pieces:
            if piece.image_shape is None:
                self.out_features += piece.stop - piece.start
                continue
            net, width = cnn(chw(piece.image_shape))
            self.cnns.append(net)
            self.out_features += width

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        outputs, nets = [], iter(self.cnns)
        for piece in self.pieces:
            x = obs[..., piece.start : piece.stop]
            if piece.image_shape is not None:
                image = x.reshape(-1, *piece.image_shape)
                if not channels_first(piece.image_shape):
                    image = image.permute(0, 3, 1, 2)
                # Channels-last (NHWC) images make oneDNN's CPU convolutions pick faster kernels: the
                # Nature CNN's forward + backward on 256 Atari frames, one thread, took 0.22 s against
                # 0.29 s for NCHW (docs/performance.md). An H×W×C image is already laid out so.
                image = image.contiguous(memory_format=torch.channels_last)
                x = next(nets)(image * (1.0 / 255.0)).reshape(*obs.shape[:-1], -1)
            outputs.append(x)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)


def build(space: gym.Space | None) -> Encoder | None:
    """The encoder for an observation space, or None where the agent takes the flat vector as it is."""
    return Encoder(space) if space is not None and has_images(space) else None


def describe(space: Any) -> str:
    """One line per image of ``space``: its layout and the conv stack it gets (for docs and messages)."""
    out = []
    for piece in pieces(space):
        if piece.image_shape is not None:
            c, h, w = chw(piece.image_shape)
            layout = "C×H×W" if channels_first(piece.image_shape) else "H×W×C"
            convs, features = stack_for(h, w)
            kernels = ", ".join(f"{o}×{k}×{k}/{s}" for o, k, s, _ in convs)
            out.append(f"{piece.image_shape} {layout} ({c} channels): conv {kernels}, linear {features}")
    return "; ".join(out)


__all__ = ["Encoder", "Piece", "build", "channels_first", "chw", "cnn", "describe", "pieces"]
