"""Configs as frozen dataclasses, validated on construction, and presets loaded from data files.

Each algorithm's config extends the one of the previous step of the chain
(REINFORCE → + baseline → Actor-Critic → A2C → PPO), so the fields a step adds are
exactly the idea it adds. Presets (tuned values per algorithm and environment) live in
``policygrad/presets/<algo>/<env_id>.toml``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from policygrad.errors import PolicygradError, suggest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


#: ``learner`` values: auto, the kernels of policygrad.kernels fastest first, the autograd reference.
LEARNERS = ("auto", "numpy-mlp", "fused-mlp", "autograd")
#: ``grad_clip`` values: each network's gradient norm clipped apart, or the actor's and critic's together.
GRAD_CLIPS = ("per-network", "joint")
#: ``policy`` values: the feed-forward agent, or an LSTM core between the encoder and the heads.
POLICIES = ("mlp", "lstm")


def positive(x: Any) -> bool:
    return x > 0


def non_negative(x: Any) -> bool:
    return x >= 0


def positive_or_none(x: Any) -> bool:
    return x is None or x > 0


def unit_open_closed(x: Any) -> bool:
    return 0 < x <= 1


def unit_closed(x: Any) -> bool:
    return 0 <= x <= 1


def setting(default: Any, check: Any = None, allowed: str = "", help: str = "") -> Any:
    """A dataclass field with a range check (`allowed` is the human-readable range)."""
    return field(default=default, metadata={"check": check, "allowed": allowed, "help": help})


@dataclass(frozen=True)
class RolloutBackendOptions:
    """Where rollouts are collected (docs/distributed.md); none of these changes the results.

    Shared by the Gymnasium configs (a shard of the environments per worker) and the
    language-model configs (a shard of each update's responses per worker).
    """

    backend: str = setting("local", lambda v: v in ("local", "ray"), "local or ray", "rollouts in-process or on Ray")
    workers: int = setting(2, positive, "> 0", "Ray rollout workers, each with a contiguous shard of the batch")
    ray_address: str | None = setting(None, help="Ray cluster: auto or HOST:PORT (None: a private local Ray)")
    worker_cpus: float = setting(1.0, positive, "> 0", "CPUs reserved per Ray worker (fractions allowed)")
    rollout_timeout: float = setting(300.0, positive, "> 0", "seconds before a silent Ray worker counts as hung")
    max_worker_restarts: int = setting(0, non_negative, ">= 0", "recreations allowed per Ray worker (0: fail fast)")


@dataclass(frozen=True)
class TrainConfig(RolloutBackendOptions):
    """Settings shared by every algorithm: the environment, the budget, the network, logging."""

    env_id: str = setting(
        "CartPole-v1", help="Gymnasium environment: a registered id, MODULE:ENV_ID, or MODULE:CALLABLE"
    )
    env_kwargs: dict[str, Any] | None = setting(None, help="keyword arguments for gym.make, as JSON")
    wrappers: list[Any] | None = setting(
        None,
        help="Gymnasium wrappers around each env, in order, as JSON: names of gymnasium.wrappers or "
        '{"name": ..., "kwargs": {...}} (e.g. AtariPreprocessing, FrameStackObservation)',
    )
    action_masking: bool = setting(
        True, help='use the env\'s action masks (info["action_mask"] or action_masks()) where it gives them'
    )
    seed: int = setting(0, non_negative, ">= 0", "seed of every random source")
    total_steps: int = setting(100_000, positive, "> 0", "environment steps to train for")
    num_envs: int = setting(8, positive, "> 0", "parallel environments (episodes per update for REINFORCE)")
    vectorization: str = setting(
        "auto",
        lambda v: v in ("auto", "batched", "native", "sync", "async"),
        "auto, batched, native, sync or async",
        "vector env: batched, policygrad's numpy replica stepping exactly as sync (CartPole; auto picks it where "
        "it exists); sync, one env per index seeded seed + i (auto elsewhere); async subprocesses; or native, "
        "Gymnasium's vectorised implementation where one exists (CartPole: one shared random generator)",
    )
    hidden_sizes: tuple[int, ...] = setting(
        (64, 64), lambda v: len(v) > 0 and all(h > 0 for h in v), "positive sizes", "MLP hidden layer sizes"
    )
    activation: str = setting("tanh", lambda v: v in ("tanh", "relu", "elu", "silu"), "tanh, relu, elu or silu")
    policy: str = setting(
        "mlp",
        lambda v: v in POLICIES,
        ", ".join(POLICIES),
        "mlp: feed-forward actor and critic; lstm: one LSTM between the observation and the actor and critic MLPs, "
        "its state carried through each episode (policygrad.recurrent; PPO minibatches are then whole sequences)",
    )
    lstm_hidden_size: int = setting(64, positive, "> 0", "units of the LSTM (policy=lstm)")
    learning_rate: float = setting(1e-3, positive, "> 0", "Adam learning rate")
    anneal_lr: bool = setting(False, help="decay the learning rate linearly to 0 over total_steps")
    max_grad_norm: float = setting(0.5, non_negative, ">= 0", "gradient-norm clipping (0: off)")
    grad_clip: str = setting(
        "per-network",
        lambda v: v in GRAD_CLIPS,
        " or ".join(GRAD_CLIPS),
        "per-network: clip the actor's and the critic's gradient norms apart to max_grad_norm; joint: clip their "
        "joint norm, as Stable-Baselines3 does",
    )
    ortho_init: bool = setting(
        True,
        help="orthogonal initialisation (gains √2 hidden, 0.01 policy output, 1 value output); false: PyTorch's "
        "default nn.Linear / nn.Conv2d initialisation (SB3's ortho_init=False)",
    )
    gamma: float = setting(0.99, unit_open_closed, "(0, 1]", "discount factor")
    ent_coef: float = setting(0.0, non_negative, ">= 0", "entropy bonus coefficient")
    init_log_std: float = setting(0.0, help="initial log standard deviation of Gaussian policies")
    normalize_obs: bool = setting(False, help="normalise observations (Gymnasium NormalizeObservation)")
    normalize_reward: bool = setting(False, help="scale rewards (Gymnasium NormalizeReward)")
    clip_obs: float | None = setting(
        None, positive_or_none, "> 0 or none", "clip normalised observations to ±clip_obs (SB3's VecNormalize: 10)"
    )
    clip_reward: float | None = setting(
        None, positive_or_none, "> 0 or none", "clip normalised rewards to ±clip_reward (SB3's VecNormalize: 10)"
    )
    eval_every: int = setting(10_000, non_negative, ">= 0", "env steps between deterministic evaluations (0: off)")
    eval_episodes: int = setting(10, positive, "> 0", "episodes per evaluation")
    target_return: float | None = setting(None, help="stop once an evaluation reaches this mean return")
    checkpoint_every: int = setting(0, non_negative, ">= 0", "also checkpoint every this many updates (0: off)")
    checkpoint_seconds: float = setting(
        10.0, non_negative, ">= 0", "checkpoint when this many seconds passed since the last one"
    )
    keep_checkpoints: int = setting(3, positive, "> 0", "checkpoints kept on disk")
    log_gradient_variance: bool = setting(
        False, help="log the variance and SNR of the policy-gradient estimate across minibatches"
    )
    gradient_variance_minibatches: int = setting(8, lambda v: v >= 2, ">= 2")
    threads: int = setting(1, positive, "> 0", "torch CPU threads (1 is fastest and deterministic for small nets)")
    learner: str = setting(
        "auto",
        lambda v: v in LEARNERS,
        ", ".join(LEARNERS),
        "who computes each gradient step: auto, the fastest kernel that serves the run (policygrad.kernels); "
        "autograd, the reference, equal up to float rounding",
    )

    def __post_init__(self) -> None:
        validate_fields(self)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; algorithms override and call super()."""
        if self.policy == "lstm" and self.log_gradient_variance:
            raise PolicygradError("log_gradient_variance needs policy=mlp: it draws minibatches of single steps")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out


def validate_fields(cfg: Any) -> None:
    """Check every field's range (from its ``setting`` metadata); raise one clear line."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        check = f.metadata.get("check")
        if check is not None and not check(value):
            raise PolicygradError(
                f"invalid {f.name} = {value!r}: allowed {f.metadata.get('allowed') or 'values'}"
                f" (set it with --set {f.name}=...)"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise PolicygradError(f"invalid {f.name} = {value!r}: must be finite")


def listed_fields(cls: type) -> list[dataclasses.Field]:
    """A config's fields in the order ``list`` commands show them: the rollout-backend options last."""
    backend = {f.name for f in dataclasses.fields(RolloutBackendOptions)}
    every = dataclasses.fields(cls)
    return [f for f in every if f.name not in backend] + [f for f in every if f.name in backend]


def field_docs(cls: type) -> dict[str, str]:
    """Field name → help text, for `policygrad list`."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def _coerce(name: str, raw: Any, annotation: Any) -> Any:
    """Convert a preset or `--set` value to the field's type, with a clear error."""
    text = str(raw)
    hint = str(annotation)
    try:
        if "tuple" in hint:
            if isinstance(raw, (list, tuple)):
                return tuple(int(v) for v in raw)
            parts = [
                p
                for p in text.replace("(", "").replace(")", "").replace("[", "").replace("]", "").split(",")
                if p.strip()
            ]
            return tuple(int(p) for p in parts)
        if hint.startswith("list"):
            if isinstance(raw, str) and not raw.strip().startswith("["):  # a bare comma-separated list of names
                return [name.strip() for name in raw.split(",") if name.strip()] or None
            value = json.loads(raw) if isinstance(raw, str) else raw
            if value is not None and not isinstance(value, list):
                raise ValueError
            return list(value) if value else None
        if hint.startswith("dict"):
            value = json.loads(raw) if isinstance(raw, str) else raw
            if value is not None and not isinstance(value, dict):
                raise ValueError
            return value or None
        if hint.startswith("float") and "None" in hint:
            return None if text.lower() in ("none", "null", "") else float(raw)
        if hint == "bool" or annotation is bool:
            if isinstance(raw, bool):
                return raw
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint == "int" or annotation is int:
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            return int(text.replace("_", ""))
        if hint == "float" or annotation is float:
            return float(raw)
        return text if not isinstance(raw, str) else raw
    except (TypeError, ValueError):
        if "dict" in hint:
            raise PolicygradError(f"invalid value for {name}: {text!r} is not a JSON object") from None
        expected = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
            getattr(annotation, "__name__", ""), "comma-separated integers" if "tuple" in hint else "a number or none"
        )
        raise PolicygradError(f"invalid value for {name}: {text!r} is not {expected}") from None


def build_config(cls: type, values: dict[str, Any]) -> Any:
    """Construct ``cls`` from loosely typed values (strings from the CLI, TOML values)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    values = dict(values)
    if "fused" in values and "learner" in names:  # run folders written before ``learner`` replaced it
        values.setdefault("learner", "auto" if _coerce("fused", values.pop("fused"), bool) else "autograd")
    for key, raw in values.items():
        if key not in names:
            raise PolicygradError(
                f"unknown setting '{key}' for {cls.__name__}{suggest(key, names)} (see: policygrad list)"
            )
        kwargs[key] = _coerce(key, raw, hints[key])
    return cls(**kwargs)


def remaining(done: int, total: int) -> float:
    """The fraction of the budget still to run, 1 at the start → 0 at the end: a linear schedule's multiplier."""
    return max(0.0, 1.0 - done / total)


def scheduled(cfg: Any, env_step: int) -> Any:
    """The config of the update that starts at ``env_step``: ``learning_rate`` and PPO's ``clip_coef`` decayed
    linearly to 0 over ``total_steps`` where ``anneal_lr`` / ``anneal_clip`` ask for it (the RL zoo's ``lin_X``).

    Returns ``cfg`` itself when nothing is scheduled. An update never starts at the end of the budget
    (``env_step`` < ``total_steps``), so the decayed values stay positive.
    """
    fraction = remaining(env_step, cfg.total_steps)
    changes: dict[str, float] = {}
    if getattr(cfg, "anneal_lr", False):
        changes["learning_rate"] = cfg.learning_rate * fraction
    if getattr(cfg, "anneal_clip", False):
        changes["clip_coef"] = cfg.clip_coef * fraction
    return dataclasses.replace(cfg, **changes) if changes else cfg


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Parse ``key=value`` strings from ``--set``."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise PolicygradError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def preset_path(algo: str, env_id: str) -> Any:
    """The preset file for (algo, env_id) inside the package (may not exist)."""
    return resources.files("policygrad") / "presets" / algo / f"{env_id.replace('/', '_')}.toml"


def load_preset(algo: str, env_id: str) -> dict[str, Any] | None:
    """Tuned hyperparameters for the pair, or None when no preset exists."""
    path = preset_path(algo, env_id)
    if not path.is_file():
        return None
    return tomllib.loads(path.read_text())


def read_preset_file(path: str) -> dict[str, Any]:
    """A preset file's values (TOML, e.g. the ``best.toml`` of ``policygrad tune``), or a one-line error."""
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise PolicygradError(f"preset file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise PolicygradError(f"preset file {path} is not valid TOML ({err})") from None
    return values


def list_presets() -> dict[str, list[str]]:
    """Algorithm name → environment ids with a shipped preset."""
    root = resources.files("policygrad") / "presets"
    out: dict[str, list[str]] = {}
    for algo_dir in sorted(root.iterdir(), key=lambda p: p.name):
        if algo_dir.is_dir():
            out[algo_dir.name] = sorted(p.name[:-5] for p in algo_dir.iterdir() if p.name.endswith(".toml"))
    return out
