"""Where an environment comes from: a registered id, a user's ``module:EnvId``, or a callable.

A run records its environment as a string that a later process can rebuild from, so that
``eval`` and ``resume`` make the same environment:

- ``CartPole-v1`` — an id in Gymnasium's registry (``ALE/…`` ids once ``ale_py`` is installed);
- ``mypkg.envs:Maze-v0`` — Gymnasium's own form: import ``mypkg.envs`` (which registers the
  id), then make ``Maze-v0``;
- ``mypkg.envs:make_maze`` — the same module form naming a callable that returns a
  ``gymnasium.Env`` (what ``policygrad.train(make_maze)`` records).

Environment keyword arguments (``--env-kwargs '{"size": 8}'``) are part of the run's config
and passed to every ``gym.make``; so are Gymnasium wrappers named in the config
(``wrappers = [{name = "AtariPreprocessing", kwargs = {frame_skip = 4}}]`` in a preset, or
``--set wrappers='["ClipReward"]'``), applied in order around each env by Gymnasium's own
``EnvSpec.additional_wrappers``. :func:`resolve` turns the three into an id registered in
this process, which every vector env, evaluation and Ray worker then makes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import gymnasium as gym
import gymnasium.wrappers
from gymnasium.envs.registration import WrapperSpec

from policygrad.errors import PolicygradError, suggest

#: Packages whose import registers environments: imported (when installed) before an id is looked up.
REGISTERING_PACKAGES = {"ALE/": "ale_py"}
#: policygrad's optional extras, by what in an env's entry point or wrappers needs them.
EXTRAS = {"envs.mujoco": "mujoco", "envs.box2d": "box2d", "ale_py": "atari", "AtariPreprocessing": "atari"}


def extra_for(env_key: str) -> str | None:
    """The ``pip install "policygrad[EXTRA]"`` extra an env needs, where it needs one."""
    if env_key not in gym.registry:
        return "atari" if env_key.startswith("ALE/") else None
    spec = gym.registry[env_key]
    needs = f"{spec.entry_point} " + " ".join(w.name for w in spec.additional_wrappers)
    return next((extra for marker, extra in EXTRAS.items() if marker in needs), None)


def resolve(env_id: str, env_kwargs: dict[str, Any] | None = None, wrappers: list[dict[str, Any]] | None = None) -> str:
    """The id, registered in this process, of ``env_id`` made with ``env_kwargs`` inside ``wrappers``.

    ``gym.make(resolve(env_id, kwargs, wrappers))`` makes exactly what the run trains on; a
    clear error names an unknown environment or wrapper.
    """
    spec = _spec(env_id)
    if not env_kwargs and not wrappers:
        return spec.id
    extra = wrapper_specs(wrappers or [])
    try:
        encoded = json.dumps([env_kwargs or {}, wrappers or []], sort_keys=True)
    except TypeError as err:
        raise PolicygradError(
            f"env kwargs and wrapper kwargs must be JSON values (numbers, strings, lists, objects): {err}"
        ) from None
    derived = f"{spec.id}.kwargs-{hashlib.blake2b(encoded.encode(), digest_size=4).hexdigest()}"
    if derived not in gym.registry:
        gym.registry[derived] = replace(
            spec,
            id=derived,
            kwargs={**spec.kwargs, **(env_kwargs or {})},
            additional_wrappers=(*spec.additional_wrappers, *extra),
        )
    return derived


def wrapper_specs(wrappers: list[Any]) -> tuple[WrapperSpec, ...]:
    """Gymnasium ``WrapperSpec`` s for config entries: ``"Name"`` or ``{"name": "Name", "kwargs": {...}}``.

    Only the single-env wrappers of :mod:`gymnasium.wrappers` are accepted: a run folder's config
    names them as data, so that resuming a folder never imports code the folder chose.
    """
    specs = []
    for entry in wrappers:
        name, kwargs = (entry, {}) if isinstance(entry, str) else (entry.get("name"), entry.get("kwargs") or {})
        known = [n for n in dir(gymnasium.wrappers) if isinstance(getattr(gymnasium.wrappers, n), type)]
        cls = getattr(gymnasium.wrappers, str(name), None)
        if not isinstance(cls, type) or not issubclass(cls, gym.Wrapper):
            raise PolicygradError(
                f"unknown wrapper {name!r}: wrappers are the env wrappers of gymnasium.wrappers"
                f'{suggest(str(name), known)} (each entry a name or {{"name": ..., "kwargs": {{...}}}})'
            )
        if not isinstance(kwargs, dict):
            raise PolicygradError(f"wrapper {name}: kwargs must be an object, got {kwargs!r}")
        specs.append(WrapperSpec(name=name, entry_point=f"gymnasium.wrappers:{name}", kwargs=kwargs))
    return tuple(specs)


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    if not isinstance(env_id, str):
        raise PolicygradError(
            f"an environment must be an id or a callable that returns a gymnasium.Env, got {type(env_id).__name__}"
            " (for an env object, pass a function that makes it)"
        )
    for prefix, package in REGISTERING_PACKAGES.items():
        if env_id.startswith(prefix) and not _import_if_installed(package):
            raise PolicygradError(
                f'{env_id} needs the package {package}, which is not installed: pip install "policygrad[atari]"'
            )
    if ":" in env_id:
        module_name, name = env_id.split(":", 1)
        module = _import_user_module(module_name, env_id)
        if name not in gym.registry:
            entry = getattr(module, name, None)
            if not callable(entry):
                raise PolicygradError(
                    f"module '{module_name}' registers no environment '{name}' and has no callable of that name"
                    f"{suggest(name, gym.registry.keys())}"
                )
            registered = f"{module_name}.{name}"
            if registered not in gym.registry:
                gym.register(id=registered, entry_point=entry)
            return gym.spec(registered)
        return gym.spec(name)
    if env_id not in gym.registry:
        raise PolicygradError(
            f"unknown environment '{env_id}'{suggest(env_id, gym.registry.keys())} "
            "(any registered Gymnasium id works, or MODULE:ENV_ID for your own; "
            'see: python -c "import gymnasium; gymnasium.pprint_registry()")'
        )
    return gym.spec(env_id)


def _import_user_module(module_name: str, env_id: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise PolicygradError(
            f"cannot import module '{module_name}' for environment '{env_id}': {err} "
            "(is it installed, or on PYTHONPATH?)"
        ) from None
    except Exception as err:  # noqa: BLE001 - the user's module failed while importing: name it, in one line
        raise PolicygradError(
            f"importing module '{module_name}' for environment '{env_id}' failed: {type(err).__name__}: {err}"
        ) from None


def _import_if_installed(package: str) -> bool:
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True


def name_of_callable(make_env: Callable[..., gym.Env]) -> str:
    """The ``module:name`` a later process rebuilds ``make_env`` from, or a clear error where there is none."""
    module, qualname = getattr(make_env, "__module__", None), getattr(make_env, "__qualname__", "")
    if module in (None, "__main__") or "<" in qualname or "." in qualname:
        raise PolicygradError(
            f"cannot record {make_env!r} for eval and resume: define it at the top level of an importable module "
            "(not in __main__, not a lambda or a nested function) and pass it, or register an id with "
            "gymnasium.register and pass 'module:EnvId'"
        )
    return f"{module}:{qualname}"


def label(env_id: str) -> str:
    """A short, path-safe name for run folders: the id without its module."""
    return env_id.split(":", 1)[-1].replace("/", "_")


__all__ = ["EXTRAS", "REGISTERING_PACKAGES", "extra_for", "label", "name_of_callable", "resolve", "wrapper_specs"]
