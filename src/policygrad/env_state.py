"""The environments' state as data: saved without pickle, restored without running code.

A checkpoint holds the state of the vector environment (episodes in flight, every random
generator, the normalisers' statistics) as JSON: :func:`capture` walks the wrapper stack
and records each layer's data attributes (numbers, strings, numeric arrays, numpy random
generators as ``bit_generator.state``), and :func:`apply` sets them on a fresh stack that
:func:`policygrad.envs.make_envs` built from the same config. Reading it parses JSON and
sets attributes; it never imports, calls or unpickles anything named in the file.

It serves the environments policygrad knows — Gymnasium's classic control and MuJoCo
environments (each env and its ``TimeLimit``/``OrderEnforcing``/``PassiveEnvChecker``
wrappers), their native vector versions, the batched replica,
:class:`~policygrad.envs.EpisodeStatistics` and the normalisers. A MuJoCo env's simulation
(``MjData``) is saved as its floating-point arrays and ``time``: ``qpos``, ``qvel``, ``act``,
``ctrl``, the solver's warm start, and the positions derived from them as the last step left
them (Ant reads its torso's ``xpos`` before it simulates, one step stale); the model is
rebuilt from the config. Another environment (a user's own class) raises :class:`EnvStateError`; its
state can then only be saved as a pickle (:func:`pickle_envs`), which resume unpickles
only when the user trusts the run folder (``--trust-run-folder``).
"""

from __future__ import annotations

import inspect
import io
import pickle
from enum import Enum
from typing import Any

import gymnasium as gym
import numpy as np

FORMAT = 1

#: Modules whose environments and wrappers keep all their episode state in data attributes.
KNOWN_MODULES = (
    "gymnasium.envs.classic_control.",
    "gymnasium.envs.mujoco.",
    "gymnasium.wrappers.common",
    "gymnasium.wrappers.vector.",
    "gymnasium.wrappers.utils",
    "gymnasium.vector.sync_vector_env",
    "policygrad.",
)
#: Attributes that are configuration or rendering, rebuilt from the config, never saved.
SKIP = frozenset(
    {
        "env",
        "envs",
        "env_fns",
        "spec",
        "metadata",
        "_metadata",
        "_cached_spec",
        "_saved_kwargs",
        "_previous_data",  # PassiveEnvChecker's data-reuse check: a warning, not state
        "render_mode",
        "screen",
        "screens",
        "surf",
        "clock",
        "viewer",
        "mujoco_renderer",
    }
)
MJ_DATA, MJ_MODEL = "mujoco._structs.MjData", "mujoco._structs.MjModel"
BIT_GENERATORS = {name: getattr(np.random, name) for name in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")}
_MISSING = object()


class EnvStateError(Exception):
    """The environments' state cannot be captured or applied as data; the message says why."""


def class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _known(obj: Any) -> None:
    name = class_name(obj)
    if not name.startswith(KNOWN_MODULES):
        raise EnvStateError(f"{name} is not an environment policygrad can save as data")


def _chain(env: Any) -> list[Any]:
    layers = [env]
    while hasattr(layers[-1], "env"):
        layers.append(layers[-1].env)
    return layers


def _encode(value: Any, where: str) -> Any:
    if isinstance(value, np.generic):  # before float: np.float64 is a float too
        if value.dtype.kind not in "biuf":
            raise EnvStateError(f"{where} is a {value.dtype} scalar")
        return {"scalar": value.item(), "dtype": value.dtype.str}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise EnvStateError(f"{where} is an array of {value.dtype}")
        return {"ndarray": value.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.random.Generator):
        bits = value.bit_generator
        if type(bits).__name__ not in BIT_GENERATORS:
            raise EnvStateError(f"{where} uses the bit generator {type(bits).__name__}")
        return {"generator": type(bits).__name__, "state": _encode(bits.state, where)}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if class_name(value) == "gymnasium.wrappers.utils.RunningMeanStd":
        return {"object": class_name(value), "attrs": _attrs(value)}
    if class_name(value) == MJ_DATA:
        return {"mujoco_data": _mujoco_arrays(value), "time": value.time}
    raise EnvStateError(f"{where} holds a {type(value).__name__}")


def _mujoco_arrays(data: Any) -> dict[str, Any]:
    """An ``MjData``'s floating-point arrays by name; its integer arrays (indices) every step recomputes."""
    out = {}
    for name in dir(data):
        value = None if name.startswith("_") else getattr(data, name, None)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
            out[name] = _encode(value, f"MjData.{name}")
    return out


def _apply_mujoco(data: Any, saved: Any, where: str) -> None:
    """Copy saved arrays into ``data``'s own arrays (same name, shape and dtype), never replacing them.

    Only floating-point arrays are written: an index a crafted file put into MuJoCo could make
    it read out of bounds. Arrays sized by the contacts of the moment (``efc_*``) are skipped
    where their size differs: every step recomputes them.
    """
    if not isinstance(saved, dict) or not isinstance(saved.get("mujoco_data"), dict):
        raise EnvStateError(f"{where}: unreadable MuJoCo state")
    time = saved.get("time")
    if not isinstance(time, float):
        raise EnvStateError(f"{where}.time is not a number")
    for name, encoded in saved["mujoco_data"].items():
        target = None if name.startswith("_") else getattr(data, name, None)
        value = _decode(encoded, f"{where}.{name}")
        if not isinstance(target, np.ndarray) or target.dtype.kind != "f" or not isinstance(value, np.ndarray):
            raise EnvStateError(f"{where}.{name} is not an array of a MuJoCo simulation")
        if value.shape == target.shape:
            target[...] = value
    data.time = time


def _decode(data: Any, where: str) -> Any:
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [_decode(v, where) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 2, 3):
        raise EnvStateError(f"{where}: unreadable value")
    if "ndarray" in data:
        dtype = np.dtype(data["dtype"])
        if dtype.kind not in "biuf":
            raise EnvStateError(f"{where}: arrays of {dtype} are not read")
        return np.asarray(data["ndarray"], dtype=dtype).reshape(data["shape"])
    if "scalar" in data:
        dtype = np.dtype(data["dtype"])
        if dtype.kind not in "biuf":
            raise EnvStateError(f"{where}: scalars of {dtype} are not read")
        return dtype.type(data["scalar"])
    if "generator" in data:
        if data["generator"] not in BIT_GENERATORS:
            raise EnvStateError(f"{where}: unknown bit generator {data['generator']!r}")
        bits = BIT_GENERATORS[data["generator"]]()
        bits.state = _decode(data["state"], where)
        return np.random.Generator(bits)
    if "tuple" in data:
        return tuple(_decode(v, where) for v in data["tuple"])
    if "dict" in data:
        return {str(k): _decode(v, where) for k, v in data["dict"].items()}
    raise EnvStateError(f"{where}: unreadable value")


def _attrs(obj: Any) -> dict[str, Any]:
    out = {}
    for name, value in sorted(vars(obj).items()):
        if name in SKIP or isinstance(value, (gym.Space, gym.envs.registration.EnvSpec, Enum)):
            continue
        if class_name(value) == MJ_MODEL:  # built from the config's XML, like the spaces
            continue
        out[name] = _encode(value, f"{type(obj).__name__}.{name}")
    return out


def _apply_attrs(obj: Any, attrs: Any) -> None:
    if not isinstance(attrs, dict):
        raise EnvStateError(f"{type(obj).__name__}: unreadable attributes")
    for name, data in attrs.items():
        where = f"{type(obj).__name__}.{name}"
        if not isinstance(name, str) or name.startswith("__") or name in SKIP:
            raise EnvStateError(f"{where} is not part of an environment's state")
        current = vars(obj).get(name, _MISSING)
        if current is _MISSING:  # set by a step (Pendulum's last_u), or a class default (an unseeded generator)
            static = inspect.getattr_static(obj, name, None)
            if callable(static) or hasattr(static, "__get__"):
                raise EnvStateError(f"{where} would replace a method or property of {class_name(obj)}")
        if isinstance(data, dict) and "object" in data:
            if current is _MISSING or class_name(current) != data["object"]:
                raise EnvStateError(f"{where} is not a {data['object']}")
            _apply_attrs(current, data["attrs"])
        elif isinstance(data, dict) and "mujoco_data" in data:
            if current is _MISSING or class_name(current) != MJ_DATA:
                raise EnvStateError(f"{where} is not a MuJoCo simulation")
            _apply_mujoco(current, data, where)
        else:
            setattr(obj, name, _decode(data, where))


def capture(envs: gym.vector.VectorEnv) -> dict[str, Any]:
    """The whole state of ``envs`` as a JSON-ready dict; :class:`EnvStateError` where that is not possible."""
    layers = []
    for layer in _chain(envs):
        if isinstance(layer, gym.vector.AsyncVectorEnv):
            raise EnvStateError("subprocess (async) environments keep their state in other processes")
        _known(layer)
        entry: dict[str, Any] = {"class": class_name(layer), "attrs": _attrs(layer)}
        if isinstance(layer, gym.vector.SyncVectorEnv):
            entry["envs"] = []
            for env in layer.envs:
                chain = _chain(env)
                for sub in chain:
                    _known(sub)
                entry["envs"].append([{"class": class_name(sub), "attrs": _attrs(sub)} for sub in chain])
        layers.append(entry)
    return {"format": FORMAT, "layers": layers}


def _check_layers(saved: Any, fresh: list[Any]) -> None:
    if not isinstance(saved, list) or [s.get("class") if isinstance(s, dict) else None for s in saved] != [
        class_name(f) for f in fresh
    ]:
        raise EnvStateError(
            "the saved environments are not the ones this config builds "
            f"(saved {[s.get('class') for s in saved if isinstance(s, dict)] if isinstance(saved, list) else '?'}, "
            f"built {[class_name(f) for f in fresh]})"
        )


def apply(envs: gym.vector.VectorEnv, state: Any) -> None:
    """Set the state saved by :func:`capture` on ``envs``, a fresh stack built from the same config.

    Raises :class:`EnvStateError` (and leaves ``envs`` partly set: rebuild them) when the
    state does not fit them.
    """
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise EnvStateError(
            f"unknown environment-state format {state.get('format') if isinstance(state, dict) else '?'}"
        )
    fresh = _chain(envs)
    _check_layers(state["layers"], fresh)
    for saved, layer in zip(state["layers"], fresh, strict=True):
        _known(layer)
        if isinstance(layer, gym.vector.SyncVectorEnv):
            if not isinstance(saved.get("envs"), list) or len(saved["envs"]) != len(layer.envs):
                raise EnvStateError(
                    f"the state holds {len(saved.get('envs') or [])} envs, the config {len(layer.envs)}"
                )
            for saved_env, env in zip(saved["envs"], layer.envs, strict=True):
                chain = _chain(env)
                _check_layers(saved_env, chain)
                for saved_sub, sub in zip(saved_env, chain, strict=True):
                    _known(sub)
                    _apply_attrs(sub, saved_sub["attrs"])
        _apply_attrs(layer, saved["attrs"])


def pickle_envs(envs: Any) -> bytes | None:
    """``envs`` pickled (for environments :func:`capture` does not know), or None where they cannot be."""
    if isinstance(_find_async(envs), gym.vector.AsyncVectorEnv):
        return None
    buffer = io.BytesIO()
    try:
        EnvPickler(buffer).dump(envs)
    except Exception:  # noqa: BLE001 - any pickling failure means "not saveable"
        return None
    return buffer.getvalue()


class EnvPickler(pickle.Pickler):
    """Pickles Gymnasium's ``FlattenObservation`` (which holds a lambda) as the call that rebuilds it from its env.

    Every observation that is not a flat vector (Dict, Discrete, images, …) goes through one.
    """

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is gym.wrappers.FlattenObservation:
            return gym.wrappers.FlattenObservation, (obj.env,)
        return NotImplemented


def _find_async(envs: Any) -> Any:
    return next((layer for layer in _chain(envs) if isinstance(layer, gym.vector.AsyncVectorEnv)), None)


def unpickle_envs(blob: bytes) -> Any:
    """Inverse of :func:`pickle_envs`: RUNS CODE named in ``blob``; only for a run folder the user trusts."""
    return pickle.loads(blob)  # noqa: S301 - called only with --trust-run-folder


__all__ = ["EnvPickler", "EnvStateError", "apply", "capture", "pickle_envs", "unpickle_envs"]
