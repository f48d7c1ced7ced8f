"""A small decoder-only transformer: the language-model policy π_θ(token | context).

Plain torch: token + learned position embeddings, pre-LayerNorm blocks of causal
self-attention (``scaled_dot_product_attention``) and a GELU MLP, a final LayerNorm and
the language-model head. An optional value head V(s_t) reads the same final hidden
state (PPO's critic). Sampling runs incrementally over a preallocated KV cache.

A model folder holds ``config.json`` (:class:`ModelConfig`, plus the task it was
pretrained on) and ``model.safetensors``: readable without policygrad.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from policygrad.errors import PolicygradError

MODEL_FORMAT = "policygrad-lm"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`TransformerLM`."""

    vocab_size: int = 16
    context_length: int = 16
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    value_head: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "d_ff"):
            if getattr(self, name) <= 0:
                raise PolicygradError(f"invalid {name} = {getattr(self, name)}: allowed > 0")
        if self.d_model % self.n_heads:
            raise PolicygradError(f"invalid n_heads = {self.n_heads}: it must divide d_model = {self.d_model}")


@dataclass
class LMOutput:
    """``logits`` (B, T, V) of the next token at each position; ``values`` (B, T) or None.

    ``hidden`` (B, T, d): the final hidden states the head reads, when the model gives them
    (:class:`TransformerLM` does; with ``with_logits=False`` it gives them instead of the
    logits, for :mod:`policygrad.lm.head`'s chunked head).
    """

    logits: torch.Tensor | None
    values: torch.Tensor | None
    hidden: torch.Tensor | None = None


class KVCache:
    """Preallocated keys and values, (n_layers, B, H, max_len, head_dim) each, filled up to ``length``."""

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, dtype: torch.dtype = torch.float32) -> None:
        head_dim = cfg.d_model // cfg.n_heads
        shape = (cfg.n_layers, batch, cfg.n_heads, max_len, head_dim)
        self.keys = torch.empty(shape, dtype=dtype)
        self.values = torch.empty(shape, dtype=dtype)
        self.length = 0


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        batch, steps, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(batch, steps, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        if cache is None:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            start = cache.length
            cache.keys[layer, :, :, start : start + steps] = k
            cache.values[layer, :, :, start : start + steps] = v
            k, v = cache.keys[layer, :, :, : start + steps], cache.values[layer, :, :, : start + steps]
            # A prefill (start = 0) is causal; one new token attends to everything cached.
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=start == 0 and steps > 1)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, steps, width))
        return x + self.mlp(self.ln2(x))


class TransformerLM(nn.Module):
    """Decoder-only transformer with an optional value head.

    ``forward(tokens)`` with tokens (B, T) returns :class:`LMOutput`: logits (B, T, V),
    where ``logits[:, t]`` scores token t + 1, and values (B, T) with ``values[:, t]`` =
    V(tokens ≤ t), the value of the context before token t + 1 is chosen.
    ``with_logits=False`` skips the head (the hidden states only), for callers that
    evaluate it a block of rows at a time (:mod:`policygrad.lm.head`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.position_embedding = nn.Embedding(cfg.context_length, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.value_head = nn.Linear(cfg.d_model, 1) if cfg.value_head else None
        self.apply(_init_weights)
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, with_logits: bool = True) -> LMOutput:
        start = 0 if cache is None else cache.length
        steps = tokens.shape[1]
        if start + steps > self.cfg.context_length:
            raise PolicygradError(
                f"sequence of {start + steps} tokens is longer than the model's context_length "
                f"{self.cfg.context_length}"
            )
        positions = torch.arange(start, start + steps)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.length += steps
        hidden = self.ln_final(x)
        values = self.value_head(hidden).squeeze(-1) if self.value_head is not None else None
        return LMOutput(self.head(hidden) if with_logits else None, values, hidden)

    def add_value_head(self) -> None:
        """Attach a fresh value head (zero-initialised, so V ≡ 0 at first); the language model is unchanged."""
        if self.value_head is None:
            self.cfg = dataclasses.replace(self.cfg, value_head=True)
            self.value_head = nn.Linear(self.cfg.d_model, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return KVCache(self.cfg, batch, max_len)

    @property
    def vocab_size(self) -> int:
        return self.cfg.vocab_size

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def save_model(model: TransformerLM, folder: Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE))
    config = {"format": MODEL_FORMAT, "model": dataclasses.asdict(model.cfg), **(extra or {})}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def read_model_config(folder: Path) -> dict[str, Any]:
    """The JSON config of a model folder, or a clear error."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise PolicygradError(
            f"{folder} is not a model folder (no {CONFIG_FILE}); create one with policygrad lm pretrain"
        )
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise PolicygradError(f"{path} is not valid JSON ({err})") from None


def load_model(folder: Path) -> TransformerLM:
    """Load a :class:`TransformerLM` saved by :func:`save_model`."""
    config = read_model_config(folder)
    if config.get("format") != MODEL_FORMAT:
        raise PolicygradError(f"{folder} is not a policygrad language model (config format {config.get('format')!r})")
    try:
        model = TransformerLM(ModelConfig(**config["model"]))
        model.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))
    except (OSError, SafetensorError, RuntimeError, TypeError, KeyError) as err:
        raise PolicygradError(f"cannot load the model in {folder}: {type(err).__name__}: {err}") from None
    return model
