"""LM estimators: each GRPO-family loss variant's expected update against the exact ∇ of the KL-regularised objective.

On the enumerable LM bandit (:mod:`policygrad.lm.exact`: a real tiny TransformerLM, every
response listed), :func:`policygrad.lm.exact_variants.expected_update` gives each
variant's expected update on a group of K responses exactly (a sum over all groups), so
the numbers carry no sampling noise. Two bandits — responses of 1–3 tokens (lengths vary)
and of exactly 3 (they do not) — and β = 0 and 0.1. A second measure is the length bias
that Dr. GRPO attributes to GRPO's 1/|o|: the first-order change of the expected length
of wrong answers (reward < 0.5) per unit of objective gained, beside that of the exact
gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from policygrad.experiments.common import Report, figure, fmt
from policygrad.lm.exact import LMBandit, exact_gradient, tiny_model
from policygrad.lm.exact_variants import VARIANTS, expected_coefficients, length_penalty, update_of

SUMMARY = (
    "GRPO's loss variants (grpo, bnpo, dapo, dr_grpo, …) against the exact LM gradient: cosine, error, length bias"
)
KL_COEFS = (0.0, 0.1)
BANDITS = {"lengths 1-3": False, "length 3": True}


def measure(update: torch.Tensor, exact: torch.Tensor, budget: int) -> dict[str, float]:
    """Cosine to ∇J; relative error |ĝ − ĝ∥|/|ĝ∥| off the ∇J direction; scale T·ĝ∥/∇J (1: an unbiased sum)."""
    along = (update @ exact) / (exact @ exact)
    orthogonal = update - along * exact
    return {
        "cosine": torch.nn.functional.cosine_similarity(update, exact, dim=0).item(),
        "relative_error": (orthogonal.norm() / (along.abs() * exact.norm())).item(),
        "scale": (along * budget).item(),
    }


def run(seed: int, quick: bool = False, **_: Any) -> Report:
    group_size = 3 if quick else 4
    results: dict[str, dict[str, dict[str, Any]]] = {}
    length_bias: dict[str, dict[int, float]] = {}
    for bandit_name, fixed in BANDITS.items():
        bandit = LMBandit(seed=seed, fixed_length=fixed)
        model, reference = tiny_model(seed=10 + seed), tiny_model(seed=20 + seed)
        for beta in KL_COEFS:
            case = f"{bandit_name}, β={beta:g}"
            exact = exact_gradient(model, reference, bandit, beta)
            tables = {v.name: expected_coefficients(v, model, reference, bandit, beta, group_size) for v in VARIANTS}
            updates = {name: update_of(table, model, bandit) for name, table in tables.items()}
            results[case] = {
                v.name: {**measure(updates[v.name], exact, bandit.response_length), "unbiased": v.unbiased}
                for v in VARIANTS
            }
            if not fixed and beta == 0.0:
                unbiased = tables[VARIANTS[0].name]
                length_bias = {name: length_penalty(table, unbiased, bandit) for name, table in tables.items()}
    return _report(seed, group_size, results, length_bias)


def _report(
    seed: int, group_size: int, results: dict[str, dict[str, dict[str, Any]]], length_bias: dict[str, dict[int, float]]
) -> Report:
    names, cases = [v.name for v in VARIANTS], list(results)
    fig, axes = figure(1, 2, width=6.5, height=4.4)
    width = 0.8 / len(cases)
    for k, case in enumerate(cases):
        error = [max(results[case][n]["relative_error"], 1e-7) for n in names]
        x = np.arange(len(names)) + (k - (len(cases) - 1) / 2) * width
        axes[0, 0].bar(x, error, width, label=case, color=f"C{k}")
    axes[0, 0].set(yscale="log", title="direction error of E[update] vs exact ∇J_β (floored at 1e-7)")
    axes[0, 0].set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    axes[0, 0].legend(fontsize=8)
    lengths = sorted(next(iter(length_bias.values())))
    height = 0.8 / len(lengths)
    for k, length in enumerate(lengths):
        y = np.arange(len(names)) + (k - (len(lengths) - 1) / 2) * height
        axes[0, 1].barh(y, [length_bias[n][length] for n in names], height, label=f"|y| = {length}", color=f"C{k}")
    axes[0, 1].set_yticks(range(len(names)), names, fontsize=8)
    axes[0, 1].invert_yaxis()
    axes[0, 1].legend(fontsize=8)
    axes[0, 1].set(title="push on wrong answers ÷ unbiased push, by length (β=0)")
    fig.suptitle(f"GRPO's loss variants on the exact LM bandit (seed {seed}, groups of K = {group_size})")

    rows = []
    for n in names:
        cells = [
            f"{results[c][n]['cosine']:.5f} / {fmt(results[c][n]['relative_error'], 2)} / {results[c][n]['scale']:.2f}"
            for c in cases
        ]
        promise = results[cases[0]][n]["unbiased"] or "—"
        rows.append(f"| {n} | {promise} | " + " | ".join(cells) + " |")
    header = "| variant | unbiased (×∇J_β/T) | " + " | ".join(cases) + " |\n|---|---|" + "---|" * len(cases)
    bias_rows = "\n".join(
        f"| {n} | "
        + " | ".join(f"{length_bias[n][ell]:.3f}" for ell in lengths)
        + f" | {length_bias[n][lengths[0]] / length_bias[n][lengths[-1]]:.2f} |"
        for n in names
    )
    bias_header = " | ".join(f"ℓ = {ell}" for ell in lengths)
    numbers = {"group_size": group_size, "kl_coefs": list(KL_COEFS), "results": results, "length_bias": length_bias}
    markdown = f"""# GRPO's loss variants against the exact gradient

Each variant's expected update on a group of K = {group_size} responses, computed exactly by
summing over every group (no sampling noise), against the exact ∇J_β of the KL-regularised
objective E[r] − β KL(π‖π_ref) on the LM bandit. Each cell: cosine / relative error off the
∇J_β direction (|ĝ − ĝ∥| / |ĝ∥|) / scale T·ĝ∥/∇J_β (1 for an unbiased sequence-sum
estimator). The KL goes into the loss as k3 (TRL's GRPOTrainer) unless the name says k1 in
the reward.

{header}
{chr(10).join(rows)}

Length bias (lengths 1–3, β = 0): the expected push each variant gives the wrong answers
(those the exact gradient pushes down, r(y) < E_π[r]) of each length ℓ, divided by the push
of the unbiased estimator (RLOO); the last column is how many times harder a 1-token wrong
answer is pushed down than a {lengths[-1]}-token one, relative to the unbiased estimator.
1 is no length bias; GRPO's 1/|o| makes it T = {lengths[-1]}: long wrong answers are
penalised less (Liu et al. 2025).

| variant | {bias_header} | short ÷ long |
|---|{"---|" * len(lengths)}---|
{bias_rows}
"""
    return Report(fig, numbers, markdown)
