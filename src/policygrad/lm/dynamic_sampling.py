"""DAPO's dynamic sampling: keep only groups whose rewards differ, and sample again to refill the batch.

A group whose K rewards are all equal has zero advantage under any group baseline, so
it adds nothing to the policy gradient but dilutes the token average (Yu et al. 2025,
§3.2, eq. 11: 0 < |{o_i correct}| < G). :func:`sample_with_signal` draws groups until
``groups`` of them carry signal or ``max_rounds`` rounds are spent; a batch still short
is topped up with the first all-equal groups drawn, so every update has the same shape
(those groups contribute only through the KL and the token count). The round count and
the fraction of groups with signal are logged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from policygrad.lm.generation import Samples


def groups_with_signal(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """(G,) bool: the group's ``scores`` (G·K,), in consecutive blocks of ``group_size``, are not all equal."""
    grouped = scores.view(-1, group_size)
    return grouped.amax(1) > grouped.amin(1)


def select_rows(samples: Samples, rows: torch.Tensor) -> Samples:
    """The responses ``rows`` (an index or a bool mask) of ``samples``."""
    return Samples(**{f.name: _rows(getattr(samples, f.name), rows) for f in dataclasses.fields(Samples)})


def concat_samples(parts: list[Samples]) -> Samples:
    """``parts`` stacked along the batch axis (same prompt length and budget)."""
    fields = dataclasses.fields(Samples)
    return Samples(**{f.name: _cat([getattr(p, f.name) for p in parts]) for f in fields})


def _rows(tensor: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return tensor[rows] if tensor is not None else None


def _cat(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    return torch.cat(tensors) if tensors[0] is not None else None  # type: ignore[arg-type]


def sample_with_signal(
    draw: Callable[[int], tuple[Samples, torch.Tensor]], groups: int, group_size: int, max_rounds: int
) -> tuple[Samples, torch.Tensor, dict[str, float]]:
    """``groups`` groups of ``group_size`` responses, as many with unequal rewards as ``max_rounds`` draws find.

    ``draw(g)`` samples g new prompts × ``group_size`` responses and returns them with
    their rewards (g·K,). Returns the samples, their rewards and metrics:
    ``sampling_rounds`` and ``signal_fraction`` (the share of the first round's groups
    that carried signal).
    """
    kept: list[tuple[Samples, torch.Tensor]] = []
    spare: list[tuple[Samples, torch.Tensor]] = []
    have, rounds, first_fraction = 0, 0, 0.0
    while have < groups and rounds < max_rounds:
        samples, scores = draw(groups - have)
        signal = groups_with_signal(scores, group_size)
        if rounds == 0:
            first_fraction = signal.float().mean().item()
        rows = signal.repeat_interleave(group_size)
        kept.append((select_rows(samples, rows), scores[rows]))
        spare.append((select_rows(samples, ~rows), scores[~rows]))
        have += int(signal.sum())
        rounds += 1
    missing = (groups - have) * group_size
    if missing > 0:  # still short: top up with all-equal groups, in the order drawn
        spare_samples = concat_samples([s for s, _ in spare])
        spare_scores = torch.cat([r for _, r in spare])
        kept.append((select_rows(spare_samples, torch.arange(missing)), spare_scores[:missing]))
    samples = concat_samples([s for s, _ in kept])
    scores = torch.cat([r for _, r in kept])
    return samples, scores, {"sampling_rounds": float(rounds), "signal_fraction": first_fraction}
