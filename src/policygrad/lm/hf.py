"""A local Hugging Face causal LM as a policy over a task's tokens (the optional ``[hf]`` extra).

The tasks speak a 16-token vocabulary; a pretrained model speaks its own. The adapter
maps each task token to one token of the model's tokenizer (digits, ``:``, ``+``,
``?`` by their text; ``<bos>``/``<eos>``/``<pad>`` by the tokenizer's special tokens)
and reads the model's logits at those 16 ids only. The policy is therefore the
pretrained model's next-token distribution renormalised over the task's tokens:
π(y_t | ·) = softmax(z[ids])_y — a real 135M-parameter π_θ, trained end to end, over
the same action space as policygrad's own transformer, so every algorithm, loss and
check applies unchanged. No hub access: only a local folder (``config.json`` and
weights, or a ``.gguf`` file, which ``transformers`` reads with the ``gguf`` package).

With ``lora_rank`` > 0 the policy trains LoRA adapters (``peft``) instead of all weights:
rank-r updates on every linear layer of attention and MLP (peft's ``"all-linear"``, the
QLoRA paper's choice; the output head stays frozen), dropout 0 (the sampled and the
scored policy must be one function), and the reference is the same model with its
adapters switched off (:class:`AdapterDisabled`): no second copy of the weights.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from policygrad.errors import PolicygradError
from policygrad.lm.model import LMOutput
from policygrad.lm.tasks import BASE_TOKENS, BOS, EOS, PAD, Task

MAP_FILE = "policygrad_tokens.json"
VALUE_HEAD_FILE = "policygrad_value_head.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"  # peft's: a folder of LoRA adapters over a base model
#: The layers LoRA adapts: every linear layer but the output head (peft's shorthand).
LORA_TARGET_MODULES = "all-linear"


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise PolicygradError("a Hugging Face model needs the optional extra: pip install 'policygrad[hf]'") from None
    return transformers


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise PolicygradError("lora_rank needs peft, in the optional extra: pip install 'policygrad[hf]'") from None
    return peft


class HFCache:
    """The model's own ``past_key_values`` and how many tokens it holds."""

    def __init__(self) -> None:
        self.past: Any = None
        self.length = 0


class HFPolicy(nn.Module):
    """A Hugging Face causal LM restricted to a task's tokens, with an optional value head.

    Same interface as :class:`~policygrad.lm.model.TransformerLM`: ``forward(tokens,
    cache)`` → :class:`~policygrad.lm.model.LMOutput` with logits (B, T, 16).
    """

    def __init__(self, model: nn.Module, token_ids: torch.Tensor, tokenizer: Any = None) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.register_buffer("token_ids", token_ids, persistent=False)
        self.value_head: nn.Linear | None = None
        self.lora_rank = 0  # LoRA adapters' rank once add_lora wrapped the model (0: none)
        # <pad> and <bos> are never response tokens (and often share an id with <eos>)
        never = torch.zeros(len(token_ids))
        # finite, so a masked-out padding position does not give -inf × 0; and no larger, so
        # log-probs there keep float32's precision (at -1e9 it steps by 64); e^-1e4 is exactly 0
        never[PAD] = never[BOS] = -1e4
        self.register_buffer("never", never, persistent=False)
        # transformers 5 renamed past_key_values to cache
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @property
    def vocab_size(self) -> int:
        return int(self.token_ids.shape[0])

    def add_value_head(self) -> None:
        if self.value_head is None:
            self.value_head = nn.Linear(self.model.config.hidden_size, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    @property
    def has_lora(self) -> bool:
        """Whether :meth:`add_lora` wrapped the model in LoRA adapters."""
        return self.lora_rank > 0

    def add_lora(self, rank: int, alpha: float | None = None, seed: int = 0) -> None:
        """Wrap the model in LoRA adapters of ``rank`` (scale ``alpha / rank``; α = rank when none).

        Only the adapters (and a value head) train from here on; the base weights are frozen.
        The adapters start as peft initialises them (A random, seeded by ``seed``; B zero),
        so the policy starts equal to the base model.
        """
        peft = _peft()
        config = peft.LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else rank,
            lora_dropout=0.0,
            target_modules=LORA_TARGET_MODULES,
            bias="none",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = peft.get_peft_model(self.model, config)
        self.lora_rank = rank

    def without_adapters(self) -> AdapterDisabled:
        """This policy with its LoRA adapters off: the frozen base model, sharing its weights."""
        return AdapterDisabled(self)

    def _trained_keys(self, prefix: str = "") -> set[str]:
        return {prefix + name for name, p in self.named_parameters() if p.requires_grad}

    def state_dict(self, *args: Any, prefix: str = "", **kwargs: Any) -> Any:
        """All weights; with LoRA only the trained ones (adapters, value head): the base is the reference folder's."""
        full = super().state_dict(*args, prefix=prefix, **kwargs)
        if not self.has_lora:
            return full
        trained = self._trained_keys(prefix)
        return type(full)((k, v) for k, v in full.items() if k in trained)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load :meth:`state_dict`'s weights; with LoRA, the frozen base weights are not expected."""
        if not self.has_lora:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = sorted(set(result.missing_keys) & self._trained_keys())
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"missing keys {missing[:3]}, unexpected keys {result.unexpected_keys[:3]}")
        return result

    def new_cache(self, batch: int, max_len: int) -> HFCache:
        return HFCache()

    def forward(self, tokens: torch.Tensor, cache: HFCache | None = None) -> LMOutput:
        ids = self.token_ids[tokens]
        want_hidden = self.value_head is not None
        if cache is None:
            out = self.model(input_ids=ids, output_hidden_states=want_hidden, use_cache=False)
        else:
            positions = torch.arange(cache.length, cache.length + ids.shape[1]).unsqueeze(0).expand(ids.shape[0], -1)
            out = self.model(
                input_ids=ids,
                position_ids=positions,
                use_cache=True,
                output_hidden_states=want_hidden,
                **{self._cache_arg: cache.past},
            )
            cache.past = getattr(out, self._cache_arg, None) or out.past_key_values
            cache.length += ids.shape[1]
        logits = out.logits[..., self.token_ids].float() + self.never
        values = self.value_head(out.hidden_states[-1].float()).squeeze(-1) if want_hidden else None
        return LMOutput(logits, values)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, folder: Path, task: str | None = None) -> None:
        """``save_pretrained`` plus the token map (and value head), so the folder loads again.

        ``task`` goes into ``config.json`` (:data:`TASK_KEY`): ``policygrad lm sample FOLDER``
        reads it there.

        With LoRA that is peft's adapter folder (``adapter_config.json`` names the base
        model's folder, ``adapter_model.safetensors``): :func:`load_hf_policy` merges it
        into the base weights on loading.
        """
        folder = Path(folder)
        if task is not None:
            setattr(self.model.config, TASK_KEY, task)
        self.model.save_pretrained(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        (folder / MAP_FILE).write_text(json.dumps({"token_ids": self.token_ids.tolist(), "tokens": BASE_TOKENS}))
        if self.value_head is not None:
            from safetensors.torch import save_file

            save_file(
                {k: v.contiguous() for k, v in self.value_head.state_dict().items()}, str(folder / VALUE_HEAD_FILE)
            )


class AdapterDisabled(nn.Module):
    """A LoRA policy evaluated with its adapters switched off: the frozen base model, the reference.

    Holds the policy without registering it as a submodule, so it has no parameters of
    its own (freezing it does not freeze the policy). Values are not computed: a
    reference has no value head.
    """

    def __init__(self, policy: HFPolicy) -> None:
        super().__init__()
        object.__setattr__(self, "policy", policy)  # not a submodule: its parameters are the policy's

    @property
    def vocab_size(self) -> int:
        return self.policy.vocab_size

    def new_cache(self, batch: int, max_len: int) -> HFCache:
        return self.policy.new_cache(batch, max_len)

    def forward(self, tokens: torch.Tensor, cache: HFCache | None = None) -> LMOutput:
        value_head, self.policy.value_head = self.policy.value_head, None
        try:
            with self.policy.model.disable_adapter():
                return self.policy(tokens, cache)
        finally:
            self.policy.value_head = value_head


def task_token_ids(tokenizer: Any) -> torch.Tensor:
    """The model token id of each of the 16 task tokens (one token each), or a clear error."""
    special = {
        "<pad>": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        "<bos>": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        "<eos>": tokenizer.eos_token_id,
    }
    ids = []
    for text in BASE_TOKENS:
        if text in special:
            if special[text] is None:
                raise PolicygradError(f"the tokenizer has no token for {text}")
            ids.append(int(special[text]))
            continue
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) != 1:
            raise PolicygradError(f"the tokenizer splits {text!r} into {len(encoded)} tokens; the tasks need one")
        ids.append(int(encoded[0]))
    if len(set(ids[2:])) != len(ids) - 2:
        raise PolicygradError("the tokenizer maps two task tokens to the same id")
    return torch.tensor(ids)


def load_hf_policy(folder: Path, task: Task) -> HFPolicy:
    """Load a local Hugging Face causal LM (safetensors/bin weights or a single ``.gguf``) as an :class:`HFPolicy`."""
    transformers = _transformers()
    if task.vocab.size != len(BASE_TOKENS):
        raise PolicygradError("a Hugging Face model works with the 16-token task vocabulary (drop --vocab-size)")
    folder = Path(folder)
    if (folder / ADAPTER_CONFIG_FILE).is_file() and not (folder / "config.json").is_file():
        return _load_adapter_folder(folder, task)
    kwargs: dict[str, Any] = {}
    ggufs = sorted(folder.glob("*.gguf"))
    if not (folder / "config.json").is_file() and ggufs:
        kwargs["gguf_file"] = ggufs[0].name
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, **kwargs
        )
    except (OSError, ValueError, ImportError) as err:
        raise PolicygradError(f"cannot load a Hugging Face model from {folder}: {err}") from None
    if "gguf_file" in kwargs:
        # GGUF weights are de-quantized to float32 on load: the model is an ordinary one from here on,
        # and saving it (the trained policy) writes ordinary safetensors
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    map_file = folder / MAP_FILE
    token_ids = (
        torch.tensor(json.loads(map_file.read_text())["token_ids"]) if map_file.is_file() else task_token_ids(tokenizer)
    )
    policy = HFPolicy(model, token_ids, tokenizer)
    _load_value_head(policy, folder)
    return policy


def _load_adapter_folder(folder: Path, task: Task) -> HFPolicy:
    """A LoRA policy saved by :meth:`HFPolicy.save`: its base model with the adapters merged into the weights."""
    peft = _peft()
    base = Path(json.loads((folder / ADAPTER_CONFIG_FILE).read_text()).get("base_model_name_or_path") or "")
    if not (base / "config.json").is_file() and not any(base.glob("*.gguf")):
        raise PolicygradError(f"the LoRA adapters in {folder} name their base model {base}, which is not a folder")
    policy = load_hf_policy(base, task)
    policy.model = peft.PeftModel.from_pretrained(policy.model, folder).merge_and_unload()
    _load_value_head(policy, folder)  # the task-token map is the base's: the same tokenizer
    return policy


def _load_value_head(policy: HFPolicy, folder: Path) -> None:
    """Add the value head saved in ``folder``, if there is one."""
    if (folder / VALUE_HEAD_FILE).is_file():
        from safetensors.torch import load_file

        policy.add_value_head()
        policy.value_head.load_state_dict(load_file(str(folder / VALUE_HEAD_FILE)))


#: Architectures :func:`new_hf_policy` builds from scratch (``policygrad lm pretrain --hf-config``).
HF_ARCHITECTURES = ("llama", "qwen2")
#: The key of a Hugging Face model's ``config.json`` naming the task policygrad pretrained it on.
TASK_KEY = "policygrad_task"


def task_tokenizer() -> Any:
    """A word-level tokenizer over the 16 task tokens (one id each, in task order): no download."""
    _transformers()
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel({t: i for i, t in enumerate(BASE_TOKENS)}, unk_token="?"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=word_level, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="?"
    )


def new_hf_policy(
    architecture: str = "llama",
    hidden_size: int = 64,
    intermediate_size: int = 256,
    layers: int = 2,
    heads: int = 4,
    context_length: int = 32,
    seed: int = 0,
) -> HFPolicy:
    """A randomly initialised Hugging Face causal LM (``llama`` or ``qwen2``) over the 16 task tokens."""
    transformers = _transformers()
    if architecture not in HF_ARCHITECTURES:
        raise PolicygradError(
            f"unknown Hugging Face architecture {architecture!r}; choose {', '.join(HF_ARCHITECTURES)}"
        )
    config_class, model_class = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }[architecture]
    config = config_class(
        vocab_size=len(BASE_TOKENS),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context_length,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = model_class(config)
    return HFPolicy(model, torch.arange(len(BASE_TOKENS)), task_tokenizer())


def save_tiny_llama(folder: Path, hidden_size: int = 64, intermediate_size: int = 256) -> int:
    """Save a small randomly initialised Llama (seed 0) with a word-level tokenizer over the 16 task tokens.

    A Hugging Face model folder that needs no download, for tests and benchmarks. Returns the parameter count.
    """
    policy = new_hf_policy("llama", hidden_size, intermediate_size)
    policy.model.save_pretrained(folder)
    policy.tokenizer.save_pretrained(folder)
    return policy.num_parameters()
