"""What a Gymnasium run's checkpoint records beyond weights and optimiser: environments and the stop decision.

- The environments' state is saved as data (:mod:`policygrad.env_state`); only environments
  policygrad cannot save as data are pickled, and resume unpickles that only when the user
  trusts the run folder. Otherwise their episodes restart, said in one line.
- The stop decision (``counters["stopped"]``: ``target``, ``budget`` or ``callback``, and the
  update) is checkpointed with the final update, so a resume never trains past it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from policygrad import env_state
from policygrad.checkpoint import Checkpoint
from policygrad.envs import load_normalizer_state
from policygrad.run_log import read_metrics


def save_envs(envs: gym.vector.VectorEnv) -> tuple[dict[str, Any], bytes | None]:
    """The checkpoint's ``env_state`` entries, and a pickle only for environments not saveable as data."""
    try:
        return {"env_state": env_state.capture(envs)}, None
    except env_state.EnvStateError as err:
        return {"env_state": None, "env_state_missing": str(err)}, env_state.pickle_envs(envs)


def restore_envs(
    make: Callable[[], gym.vector.VectorEnv], checkpoint: Checkpoint, trust: bool
) -> tuple[gym.vector.VectorEnv, bool]:
    """Environments from ``make()`` holding the checkpoint's state, and whether they do.

    Where they cannot (episodes restart), says why in one line on stderr; a pickle is
    unpickled only with ``trust`` (``--trust-run-folder``).
    """
    state = checkpoint.state
    envs = make()
    if state.get("env_state") is not None:
        try:
            env_state.apply(envs, state["env_state"])
            return envs, True
        except env_state.EnvStateError as err:
            reason = f"its environment state does not fit these environments ({err})"
        envs.close()
        envs = make()
    elif checkpoint.env_pickle is not None and trust:
        try:
            restored = env_state.unpickle_envs(checkpoint.env_pickle.read_bytes())
            envs.close()  # the pickled envs have the spaces of these: the same config made them
            return restored, True
        except Exception as err:  # noqa: BLE001 - any failure of a pickle means fresh environments
            reason = f"its pickled environments could not be restored ({type(err).__name__}: {err})"
    elif checkpoint.env_pickle is not None:
        reason = (
            "its environments are saved only as a pickle (envs.pkl), and unpickling runs code from the run "
            "folder; pass --trust-run-folder if you trust it"
        )
    else:
        reason = f"its environments could not be saved ({state.get('env_state_missing', 'subprocess envs')})"
    load_normalizer_state(envs, state.get("normalizer", {}))
    print(f"policygrad: {checkpoint.path.name}: {reason}; episodes restart on resume", file=sys.stderr)
    return envs, False


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.csv`` as numbers (the trainer's ``history``)."""
    out = []
    for row in read_metrics(run_dir):
        out.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
        out[-1]["update"], out[-1]["env_step"] = int(row["update"]), int(row["env_step"])
    return out


def numpy_rng_to_json(state: tuple) -> list:
    """numpy's legacy global RNG state (``np.random.get_state()``) as JSON."""
    return [state[0], state[1].tolist(), state[2], state[3], state[4]]


def numpy_rng_from_json(state: list) -> tuple:
    return (state[0], np.asarray(state[1], dtype=np.uint32), state[2], state[3], state[4])


def finished_message(counters: dict[str, Any], total_steps: int, update: int) -> str:
    """How a run stopped: ``finished (target reached at update 40)``."""
    update = counters.get("stopped_update", update)
    why = {
        "target": f"target reached at update {update}",
        "callback": f"stopped by its caller at update {update}",
    }.get(counters.get("stopped"), f"all {total_steps:,} steps done at update {update}")
    return f"finished ({why})"


__all__ = [
    "finished_message",
    "numpy_rng_from_json",
    "numpy_rng_to_json",
    "read_history",
    "restore_envs",
    "save_envs",
]
