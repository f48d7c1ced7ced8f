"""Generated tasks with verifiable rewards, each with a pretraining corpus.

Every task shares one small vocabulary (16 tokens, or the same 16 followed by unused
filler tokens up to ``vocab_size`` for the large-vocabulary variant). A prompt always
has the same length within a task, so a batch of prompts is a plain (N, P) tensor.

==========  ==============================  ====================  ==============================
task        prompt                          response              reward
==========  ==============================  ====================  ==============================
``target``  ``<bos> d :``                   8 tokens              fraction of tokens equal to d
``sum``     ``<bos> S₁ S₀ :`` (S ≤ 36)      4 digits ``<eos>``    1 / (1 + |Σ digits − S|), 0 if
                                                                  malformed
``sort``    ``<bos> x₁ … x₆ :``             6 digits ``<eos>``    fraction of positions equal to
                                                                  sorted(x), 0 if malformed
==========  ==============================  ====================  ==============================

The corpora make the reference fluent (it writes well-formed responses) but not good:
``target`` responses are uniform digits, ``sum`` and ``sort`` responses are noisy
demonstrations that are right only part of the time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from policygrad.errors import PolicygradError, lookup

BASE_TOKENS = ["<pad>", "<bos>", "<eos>", ":"] + [str(d) for d in range(10)] + ["+", "?"]
PAD, BOS, EOS, SEP = 0, 1, 2, 3
DIGIT0 = 4  # token id of "0"; digit d is DIGIT0 + d


@dataclass(frozen=True)
class Vocabulary:
    """Token ids ↔ strings. ``size`` ≥ 16; ids from 16 on are unused filler tokens ``<wN>``."""

    size: int = len(BASE_TOKENS)

    def __post_init__(self) -> None:
        if self.size < len(BASE_TOKENS):
            raise PolicygradError(f"invalid vocab_size = {self.size}: allowed >= {len(BASE_TOKENS)}")

    def token(self, index: int) -> str:
        return BASE_TOKENS[index] if index < len(BASE_TOKENS) else f"<w{index}>"

    def decode(self, ids: list[int] | torch.Tensor, skip_pad: bool = True) -> str:
        """Token ids → a readable string (digits run together, other tokens spaced)."""
        out = []
        for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
            if skip_pad and i == PAD:
                continue
            out.append(self.token(int(i)))
        return " ".join(out)


def digits_of(tokens: torch.Tensor) -> torch.Tensor:
    """Digit values of digit tokens (−1 where a token is not a digit). Any shape."""
    values = tokens - DIGIT0
    return torch.where((values >= 0) & (values <= 9), values, torch.full_like(values, -1))


class Task:
    """A task: prompts, a reward for each response, a success test, and a pretraining corpus.

    Subclasses set ``name``, ``prompt_length`` and ``response_length`` (the most tokens a
    response may have, which is also the generation budget) and ``stop_at_eos``.
    """

    name: str = ""
    prompt_length: int = 0
    response_length: int = 0
    stop_at_eos: bool = True

    def __init__(self, vocab_size: int = len(BASE_TOKENS)) -> None:
        self.vocab = Vocabulary(vocab_size)

    # ----- prompts and rewards ------------------------------------------------------
    def prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random prompts, (n, prompt_length) token ids."""
        raise NotImplementedError

    def reward(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """Rewards in [0, 1], (N,), for ``responses`` (N, response_length), padded with ``<pad>``."""
        raise NotImplementedError

    def success(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """Whether each response solves its prompt exactly, (N,) bool."""
        return self.reward(prompts, responses) >= 1.0

    # ----- pretraining --------------------------------------------------------------
    def corpus(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` pretraining sequences ``prompt + response``, (n, prompt_length + response_length)."""
        prompts = self.prompts(n, generator)
        return torch.cat([prompts, self.demonstrations(prompts, generator)], dim=1)

    def demonstrations(self, prompts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Corpus responses for ``prompts``: fluent, right only part of the time."""
        raise NotImplementedError

    @property
    def sequence_length(self) -> int:
        return self.prompt_length + self.response_length

    def describe(self) -> str:
        return (self.__doc__ or self.name).strip().splitlines()[0]


class TargetTask(Task):
    """target: the prompt names a digit d; reward is the fraction of the 8 response tokens equal to d.

    The corpus writes independent digits, each equal to d with probability
    q = hint + (1 − hint)/10 = 0.19 (so the reference attends to the prompt but is not
    good at the task). For such a product-form reference the KL-regularised optimum
    π* ∝ π_ref · exp(r/β) is again a product of per-token distributions, each putting
    probability q·e^{c} / (q·e^{c} + 1 − q) on d, where q = π_ref(d) and c = 1/(Lβ):
    :func:`target_optimum` gives it in closed form.
    """

    name = "target"
    prompt_length = 3
    response_length = 8
    stop_at_eos = False

    def prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        digit = torch.randint(0, 10, (n,), generator=generator)
        return torch.stack([torch.full((n,), BOS), DIGIT0 + digit, torch.full((n,), SEP)], dim=1)

    def reward(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        hits = responses[:, : self.response_length] == prompts[:, 1:2]
        return hits.float().sum(1) / self.response_length

    #: corpus tokens copy the prompt's digit with this probability, else are uniform digits
    hint = 0.1

    def demonstrations(self, prompts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        shape = (prompts.shape[0], self.response_length)
        uniform = DIGIT0 + torch.randint(0, 10, shape, generator=generator)
        copy = torch.rand(shape, generator=generator) < self.hint
        return torch.where(copy, prompts[:, 1:2].expand(shape), uniform)


def target_optimum(ref_prob: float, kl_coef: float, length: int = TargetTask.response_length) -> dict[str, float]:
    r"""Closed-form KL-regularised optimum of ``target`` for a product-form reference.

    With r(y) = (1/L) Σ_t 1[y_t = d] and π_ref(y) = Π_t q(y_t), the maximiser of
    E_π[r] − β KL(π‖π_ref) is π*(y) ∝ π_ref(y) e^{r(y)/β} = Π_t q(y_t) e^{1[y_t=d]/(Lβ)}:

    .. math::

        p^* = \frac{q\,e^{c}}{q\,e^{c} + 1 - q},\quad c = \frac{1}{L\beta},\qquad
        \mathrm{KL}(\pi^*\|\pi_{ref}) = L\left[p^*\log\frac{p^*}{q} + (1-p^*)\log\frac{1-p^*}{1-q}\right]

    Returns the expected reward p*, the KL, and the optimal objective p* − β·KL.
    """
    import math

    c = 1.0 / (length * kl_coef)
    p = ref_prob * math.exp(c) / (ref_prob * math.exp(c) + 1.0 - ref_prob)
    kl = length * (p * math.log(p / ref_prob) + (1 - p) * math.log((1 - p) / (1 - ref_prob)))
    return {"reward": p, "kl": kl, "objective": p - kl_coef * kl}


class SumTask(Task):
    """sum: the prompt gives S (0–36); the response is four digits whose sum should be S.

    Reward 1 / (1 + |d₁ + d₂ + d₃ + d₄ − S|) for four digits followed by ``<eos>``, and 0
    for anything else; success (exact-sum accuracy) is reward 1.
    """

    name = "sum"
    prompt_length = 4
    response_length = 5
    digits = 4
    #: corpus responses hit the sum exactly this often; otherwise they miss by 1–3
    exact_fraction = 0.5
    max_miss = 3

    def __init__(self, vocab_size: int = len(BASE_TOKENS)) -> None:
        super().__init__(vocab_size)
        tuples = torch.tensor(list(itertools.product(range(10), repeat=self.digits)))
        order = torch.argsort(tuples.sum(1), stable=True)
        self._by_sum = tuples[order]
        counts = torch.bincount(tuples.sum(1), minlength=9 * self.digits + 1)
        self._offsets = torch.cumsum(counts, 0) - counts
        self._counts = counts

    def prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        total = torch.randint(0, 9 * self.digits + 1, (n,), generator=generator)
        return torch.stack(
            [torch.full((n,), BOS), DIGIT0 + total // 10, DIGIT0 + total % 10, torch.full((n,), SEP)], dim=1
        )

    def target_sum(self, prompts: torch.Tensor) -> torch.Tensor:
        return digits_of(prompts[:, 1]) * 10 + digits_of(prompts[:, 2])

    def reward(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        values = digits_of(responses[:, : self.digits])
        well_formed = (values >= 0).all(1) & (responses[:, self.digits] == EOS)
        error = (values.sum(1) - self.target_sum(prompts)).abs().float()
        return torch.where(well_formed, 1.0 / (1.0 + error), torch.zeros_like(error))

    def demonstrations(self, prompts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = prompts.shape[0]
        target = self.target_sum(prompts)
        miss = torch.randint(1, self.max_miss + 1, (n,), generator=generator) * (
            torch.randint(0, 2, (n,), generator=generator) * 2 - 1
        )
        exact = torch.rand(n, generator=generator) < self.exact_fraction
        total = (target + torch.where(exact, torch.zeros_like(miss), miss)).clamp(0, 9 * self.digits)
        # a uniformly random digit tuple with that sum
        pick = self._offsets[total] + (torch.rand(n, generator=generator) * self._counts[total]).long()
        digits = self._by_sum[pick]
        return torch.cat([DIGIT0 + digits, torch.full((n, 1), EOS)], dim=1)


class SortTask(Task):
    """sort: the prompt lists six digits; the response writes them in ascending order.

    Reward: the fraction of the six positions that match the sorted list, for six digits
    followed by ``<eos>`` (0 otherwise); success is the exact sorted list.
    """

    name = "sort"
    length = 6
    prompt_length = length + 2
    response_length = length + 1
    #: corpus responses are sorted, then this many adjacent pairs swapped or digits replaced
    corruptions = 2

    def prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        digits = torch.randint(0, 10, (n, self.length), generator=generator)
        return torch.cat([torch.full((n, 1), BOS), DIGIT0 + digits, torch.full((n, 1), SEP)], dim=1)

    def reward(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        wanted = torch.sort(prompts[:, 1 : 1 + self.length], dim=1).values
        got = responses[:, : self.length]
        well_formed = (digits_of(got) >= 0).all(1) & (responses[:, self.length] == EOS)
        score = (got == wanted).float().mean(1)
        return torch.where(well_formed, score, torch.zeros_like(score))

    def demonstrations(self, prompts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = prompts.shape[0]
        out = torch.sort(prompts[:, 1 : 1 + self.length], dim=1).values.clone()
        rows = torch.arange(n)
        for _ in range(self.corruptions):
            where = torch.randint(0, self.length - 1, (n,), generator=generator)
            kind = torch.randint(0, 3, (n,), generator=generator)  # 0: keep, 1: swap neighbours, 2: replace
            left, right = out[rows, where].clone(), out[rows, where + 1].clone()
            swap = kind == 1
            out[rows[swap], where[swap]] = right[swap]
            out[rows[swap], where[swap] + 1] = left[swap]
            replace = kind == 2
            out[rows[replace], where[replace]] = DIGIT0 + torch.randint(
                0, 10, (int(replace.sum()),), generator=generator
            )
        return torch.cat([out, torch.full((n, 1), EOS)], dim=1)


TASKS: dict[str, type[Task]] = {"target": TargetTask, "sum": SumTask, "sort": SortTask}


def get_task(name: str, vocab_size: int = len(BASE_TOKENS)) -> Task:
    """The task called ``name`` (target, sum or sort), or a clear error."""
    return lookup(name, TASKS, "task")(vocab_size)
