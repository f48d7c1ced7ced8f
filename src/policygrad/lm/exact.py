r"""An enumerable "LM bandit": exact J(θ) and ∇J(θ) of a language-model policy, to check token estimators.

The bandit is one prompt, a vocabulary of ``vocab_size`` tokens (one of them
``<eos>``) and responses of at most ``max_length`` tokens, so every response y can be
listed: with A = V − 1 non-``<eos>`` tokens there are Σ_{k<L} A^k (ending in ``<eos>``)
+ A^L (cut at L) of them. Each response has a fixed reward r(y). For the policy
π_θ — the real :class:`~policygrad.lm.model.TransformerLM`, tiny — and a reference
π_ref,

.. math::

    J_\beta(\theta) = \sum_y \pi_\theta(y)\, r(y) \;-\; \beta \sum_y \pi_\theta(y)
        \log\frac{\pi_\theta(y)}{\pi_{ref}(y)},\qquad
    \pi_\theta(y) = \prod_t \pi_\theta(y_t \mid y_{<t})

is a finite sum, and ∇J_β comes from autograd through it. A token estimator — one
algorithm's advantages and loss on N sampled responses — is then run M times; its
mean gradient is compared with ∇J_β along a few fixed directions d (the exact gradient
itself and random unit vectors): z = (mean·d − ∇J·d) / (std(g·d)/√M). Unbiased
estimators give |z| of a few at most; biased ones show their bias as a relative error.

The gradients of the losses are per token-budget T (``sequence-sum`` divides by T), so
an unbiased estimator's mean is ∇J_β / T. The KL-regularised optimum also has a closed
form here, π*(y) ∝ π_ref(y) e^{r(y)/β}: :func:`kl_optimum`.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import torch

from policygrad.lm.algorithms import get_algorithm
from policygrad.lm.algorithms.common import loss_mask, minibatch_loss
from policygrad.lm.generation import generate, sampling_uniforms, score
from policygrad.lm.model import ModelConfig, TransformerLM
from policygrad.lm.rollout import build_rollout
from policygrad.lm.tasks import BOS, EOS, PAD, Task


class LMBandit(Task):
    """One prompt (``<bos>``), responses of at most ``max_length`` tokens, a fixed random reward per response."""

    name = "lm-bandit"
    prompt_length = 1

    def __init__(self, vocab_size: int = 4, max_length: int = 3, seed: int = 0, fixed_length: bool = False) -> None:
        super().__init__(16)
        self.model_vocab = vocab_size
        self.response_length = max_length
        #: with ``fixed_length`` ``<eos>`` is an ordinary token: every response has ``max_length`` tokens
        self.stop_at_eos = not fixed_length
        responses, mask = [], []
        actions = [a for a in range(vocab_size) if a != EOS or fixed_length]
        for length in range(0 if not fixed_length else max_length, max_length + 1):
            for body in itertools.product(actions, repeat=length):
                if length < max_length:
                    tokens = list(body) + [EOS]
                elif length == max_length:
                    tokens = list(body)
                padded = tokens + [PAD] * (max_length - len(tokens))
                responses.append(padded)
                mask.append([True] * len(tokens) + [False] * (max_length - len(tokens)))
        #: every response, (M, L), padded with <pad>; and its mask
        self.responses = torch.tensor(responses)
        self.mask = torch.tensor(mask)
        generator = torch.Generator().manual_seed(seed)
        #: r(y) for each enumerated response, (M,)
        self.rewards = torch.rand(len(responses), generator=generator)
        self._index = {self._key(r, m): i for i, (r, m) in enumerate(zip(self.responses, self.mask, strict=True))}

    @staticmethod
    def _key(response: torch.Tensor, mask: torch.Tensor) -> tuple[int, ...]:
        return tuple(int(t) for t in response[mask])

    def prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.full((n, 1), BOS)

    def lookup(self, responses: torch.Tensor) -> torch.Tensor:
        """Index of each response (N, L) in the enumeration, (N,)."""
        is_eos = (responses == EOS) & self.stop_at_eos
        ended = is_eos.any(1)
        length = torch.where(
            ended, is_eos.float().argmax(1) + 1, torch.full_like(ended, self.response_length, dtype=torch.long)
        )
        mask = torch.arange(self.response_length).unsqueeze(0) < length.unsqueeze(1)
        return torch.tensor([self._index[self._key(r, m)] for r, m in zip(responses, mask, strict=True)])

    def reward(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        return self.rewards[self.lookup(responses)]

    def demonstrations(self, prompts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError("the LM bandit has no corpus")


def tiny_model(vocab_size: int = 4, max_length: int = 3, seed: int = 0, value_head: bool = False) -> TransformerLM:
    """A real :class:`TransformerLM`, small enough for many repetitions (about 1k parameters)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=vocab_size,
        context_length=max_length + 1,
        d_model=8,
        n_layers=1,
        n_heads=2,
        d_ff=16,
        value_head=value_head,
    )
    model = TransformerLM(cfg)
    with torch.no_grad():  # larger than the usual 0.02 init, so the policy is far from uniform
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def sequence_log_probs(model: torch.nn.Module, bandit: LMBandit) -> torch.Tensor:
    """log π(y) of every enumerated response, (M,), differentiable."""
    prompts = torch.full((bandit.responses.shape[0], 1), BOS)
    return (score(model, prompts, bandit.responses).log_probs * bandit.mask).sum(1)


def exact_objective(
    model: torch.nn.Module, reference: torch.nn.Module, bandit: LMBandit, kl_coef: float
) -> torch.Tensor:
    """J_β(θ) = Σ_y π(y) r(y) − β KL(π‖π_ref), by enumeration (a differentiable scalar)."""
    log_p = sequence_log_probs(model, bandit)
    with torch.no_grad():
        log_ref = sequence_log_probs(reference, bandit)
    p = log_p.exp()
    return (p * bandit.rewards).sum() - kl_coef * (p * (log_p - log_ref)).sum()


def _policy_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for name, p in model.named_parameters() if not name.startswith("value_head")]


def flat_gradient(scalar: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """∂ scalar / ∂θ over the language model's parameters (not the value head), flattened."""
    params = _policy_parameters(model)
    grads = torch.autograd.grad(scalar, params, allow_unused=True)
    flat = [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)]
    return torch.cat(flat)


def exact_gradient(
    model: torch.nn.Module, reference: torch.nn.Module, bandit: LMBandit, kl_coef: float
) -> torch.Tensor:
    """∇_θ J_β, flattened, by autograd through the enumeration."""
    return flat_gradient(exact_objective(model, reference, bandit, kl_coef), model)


def estimator_gradients(
    algo: str,
    model: torch.nn.Module,
    reference: torch.nn.Module,
    bandit: LMBandit,
    replications: int,
    seed: int = 0,
    **settings: Any,
) -> torch.Tensor:
    """``replications`` independent gradient estimates (M, P) of one algorithm, each from one batch.

    Each estimate is −∇(the algorithm's loss) at the current θ (before any step: PPO's
    and GRPO's ratio is 1), from a fresh batch of ``prompts_per_update`` ×
    ``samples_per_prompt`` responses. ``settings`` override the algorithm's config.
    """
    module = get_algorithm(algo)
    cfg = dataclasses.replace(module.Config(), task="sum", seed=seed, **settings)
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(replications):
        prompts = bandit.prompts(cfg.batch_size, generator)
        group_ids = torch.arange(cfg.prompts_per_update).repeat_interleave(cfg.samples_per_prompt)
        uniforms = sampling_uniforms(generator, cfg.batch_size, bandit.response_length)
        samples = generate(model, prompts, bandit.response_length, uniforms, bandit.stop_at_eos)
        with torch.no_grad():
            ref_log_probs = score(reference, prompts, samples.responses).log_probs
        rollout = build_rollout(
            samples,
            bandit.reward(prompts, samples.responses),
            ref_log_probs,
            group_ids,
            cfg.kl_coef,
            cfg.kl_in == "reward",
        )
        kwargs: dict[str, Any] = {"step_tokens": loss_mask(rollout, cfg).sum().item()}
        if algo in ("grpo", "ppo"):
            kwargs.update(clip_coef=cfg.epsilon_low, clip_high=cfg.clip_high)
        if algo == "ppo":
            advantages, returns = module.advantages_and_returns(rollout, cfg)
            kwargs.update(returns=returns, vf_coef=0.0)
        else:
            advantages = module.advantages(rollout, cfg)
        loss, _ = minibatch_loss(model, rollout, torch.arange(cfg.batch_size), advantages, cfg, **kwargs)
        out.append(-flat_gradient(loss, model))
    return torch.stack(out)


@dataclass
class EstimatorCheck:
    """Mean estimate vs exact gradient along fixed directions.

    ``z``: (mean·d − expected·d) / standard error, one per direction (the first is the
    exact gradient's direction); ``relative_bias``: (mean − expected)·ĝ / |expected|
    along ĝ = expected/|expected|; ``cosine`` between mean and expected.
    """

    z: list[float]
    relative_bias: float
    cosine: float
    replications: int

    @property
    def max_abs_z(self) -> float:
        return max(abs(v) for v in self.z)


def compare(
    estimates: torch.Tensor,
    expected: torch.Tensor,
    directions: int = 4,
    seed: int = 0,
    scale: torch.Tensor | None = None,
) -> EstimatorCheck:
    """Compare ``estimates`` (M, P) with ``expected`` (P,) along ĝ and ``directions`` random unit vectors.

    ĝ is ``scale`` / |``scale``| when given (use it when ``expected`` is zero, e.g. for the
    difference of two estimators on the same samples), else ``expected`` / |``expected``|;
    ``relative_bias`` is measured in units of |ĝ's source|.
    """
    scale = expected if scale is None else scale
    generator = torch.Generator().manual_seed(seed + 1000)
    unit = scale / scale.norm()
    random = torch.randn(directions, expected.shape[0], generator=generator, dtype=expected.dtype)
    basis = torch.cat([unit.unsqueeze(0), random / random.norm(dim=1, keepdim=True)])
    projected = estimates @ basis.T  # (M, D)
    m = estimates.shape[0]
    stderr = projected.std(0) / m**0.5
    z = ((projected.mean(0) - basis @ expected) / stderr).tolist()
    mean = estimates.mean(0)
    return EstimatorCheck(
        z=z,
        relative_bias=((mean - expected) @ unit / scale.norm()).item(),
        cosine=torch.nn.functional.cosine_similarity(mean, expected, dim=0).item()
        if expected.norm() > 0
        else float("nan"),
        replications=m,
    )


def kl_optimum(reference: torch.nn.Module, bandit: LMBandit, kl_coef: float) -> torch.Tensor:
    """π*(y) ∝ π_ref(y) e^{r(y)/β} over the enumerated responses, (M,): the maximiser of J_β."""
    with torch.no_grad():
        logits = sequence_log_probs(reference, bandit) + bandit.rewards / kl_coef
    return torch.softmax(logits, 0)


def response_distribution(model: torch.nn.Module, bandit: LMBandit) -> torch.Tensor:
    """π_θ(y) over the enumerated responses, (M,)."""
    with torch.no_grad():
        return sequence_log_probs(model, bandit).exp()
