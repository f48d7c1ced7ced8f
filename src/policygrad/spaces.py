"""Observation and action spaces: which ones policygrad serves, and their JSON form in a run folder.

Observations reach the policy as one flat float vector: a Box of any shape is flattened,
a Discrete observation one-hot encoded, MultiBinary and MultiDiscrete as numbers, and the
keys of a Dict or the items of a Tuple concatenated in order — Gymnasium's own
``spaces.flatten`` (the vector env wears Gymnasium's ``FlattenObservation``). The agent keeps
the space, so ``agent.act(raw_observation)`` flattens the same way, and its encoder cuts
images (:func:`is_image`) back out of the vector for a CNN (:mod:`policygrad.encoders`).

Actions: Discrete (any ``start``), MultiDiscrete, MultiBinary and 1-D Box (see
:mod:`policygrad.heads`). Anything else is refused in one line that names the space.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from policygrad.errors import PolicygradError

FLAT_LEAVES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiBinary, gym.spaces.MultiDiscrete)


def observation_refusal(space: gym.Space) -> str | None:
    """Why policygrad cannot serve this observation space, or None."""
    if isinstance(space, gym.spaces.Dict):
        return next((r for s in space.spaces.values() if (r := observation_refusal(s))), None)
    if isinstance(space, gym.spaces.Tuple):
        return next((r for s in space.spaces if (r := observation_refusal(s))), None)
    if not isinstance(space, FLAT_LEAVES):
        return f"observation space {type(space).__name__} ({space}) is not supported"
    return None


def is_image(space: gym.Space) -> bool:
    """An image: a ``uint8`` Box of three dims (H×W×C or C×H×W, :func:`policygrad.encoders.channels_first`)."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def has_images(space: gym.Space) -> bool:
    """Whether an image is in ``space`` (itself, or a key or item of a Dict or Tuple, at any depth)."""
    if isinstance(space, gym.spaces.Dict):
        return any(has_images(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return any(has_images(s) for s in space.spaces)
    return is_image(space)


def always_finite(space: gym.Space) -> bool:
    """Whether every observation of ``space`` is finite by its type: integer Boxes (images), Discrete,
    MultiDiscrete and MultiBinary, and Dicts and Tuples of them. Their rollouts need no NaN/inf scan."""
    if isinstance(space, gym.spaces.Dict):
        return all(always_finite(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return all(always_finite(s) for s in space.spaces)
    if isinstance(space, gym.spaces.Box):
        return bool(np.issubdtype(space.dtype, np.integer))
    return isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary))


def is_flat_vector(space: gym.Space) -> bool:
    """A 1-D Box: what the policy takes as it is."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 1


def describe_action_space(env_id: str, space: gym.Space) -> dict[str, Any]:
    """The head's kind and sizes for an action space (AgentSpec fields), or a clear error."""
    if isinstance(space, gym.spaces.Discrete):
        return {"kind": "discrete", "action_dim": int(space.n), "start": (int(space.start),)}
    if isinstance(space, gym.spaces.MultiDiscrete) and len(space.nvec.shape) == 1:
        nvec = tuple(int(n) for n in space.nvec)
        start = tuple(int(s) for s in space.start)
        return {"kind": "multi_discrete", "action_dim": sum(nvec), "nvec": nvec, "start": start}
    if isinstance(space, gym.spaces.MultiBinary) and isinstance(space.n, (int, np.integer)):
        return {"kind": "multi_binary", "action_dim": int(space.n)}
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return {
            "kind": "box",
            "action_dim": int(space.shape[0]),
            "low": tuple(float(x) for x in space.low),
            "high": tuple(float(x) for x in space.high),
        }
    raise PolicygradError(
        f"{env_id} has action space {space}; policygrad supports Discrete, MultiDiscrete, MultiBinary and 1-D Box "
        "action spaces"
    )


def to_json(space: gym.Space) -> dict[str, Any]:
    """A JSON-ready description of an observation space (for the agent's saved spec)."""
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: to_json(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [to_json(s) for s in space.spaces]}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    assert isinstance(space, gym.spaces.Box)
    return {
        "type": "Box",
        "low": _bound(space.low),
        "high": _bound(space.high),
        "shape": list(space.shape),
        "dtype": str(space.dtype),
    }


def _bound(values: np.ndarray) -> Any:
    """A Box bound as JSON: one number where every entry is the same (an image's 0 and 255), else the list."""
    flat = values.reshape(-1)
    return flat[0].item() if flat.size and (flat == flat[0]).all() else values.tolist()


def from_json(data: dict[str, Any]) -> gym.Space:
    """The space :func:`to_json` described."""
    kind = data["type"]
    if kind == "Dict":
        return gym.spaces.Dict({k: from_json(s) for k, s in data["spaces"].items()})
    if kind == "Tuple":
        return gym.spaces.Tuple([from_json(s) for s in data["spaces"]])
    if kind == "Discrete":
        return gym.spaces.Discrete(data["n"], start=data["start"])
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(data["n"])
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(data["nvec"], start=data["start"])
    dtype = np.dtype(data["dtype"])
    shape = tuple(data["shape"])
    low, high = (np.broadcast_to(np.asarray(data[k], dtype=dtype), shape) for k in ("low", "high"))
    return gym.spaces.Box(low, high, shape, dtype)


def flatten_batch(space: gym.Space, observations: Any) -> np.ndarray:
    """Raw observations (one, or a list/batch of them) → (B, flatdim) float64, as the vector env flattens them."""
    if not is_batch(space, observations):
        return np.asarray(gym.spaces.flatten(space, observations), dtype=np.float64).reshape(1, -1)
    return np.stack([gym.spaces.flatten(space, o) for o in observations]).astype(np.float64)


def is_batch(space: gym.Space, observations: Any) -> bool:
    """Whether raw ``observations`` are several observations of ``space``: a list of them, or an array with one
    more axis than one has. A Dict or Tuple observation is always one."""
    if isinstance(observations, (list, tuple)) and not isinstance(space, gym.spaces.Tuple):
        return True
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        return False
    single_ndim = 0 if isinstance(space, gym.spaces.Discrete) else len(space.shape)
    return np.asarray(observations).ndim == single_ndim + 1


__all__ = [
    "describe_action_space",
    "flatten_batch",
    "is_batch",
    "from_json",
    "has_images",
    "is_flat_vector",
    "is_image",
    "observation_refusal",
    "to_json",
]
