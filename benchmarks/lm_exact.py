"""Token estimators against the exact gradient of the enumerable LM bandit: the table in docs/lm.md.

For each estimator: the z-scores of its mean (M replications) against the exact
∇J_β / T along the exact gradient's direction and 4 random directions, its relative
bias along the exact gradient, and the cosine. Seeds 0–2.

    python benchmarks/lm_exact.py [--replications 400] [--out benchmarks/results/lm_exact.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from policygrad.lm.exact import LMBandit, compare, estimator_gradients, exact_gradient, tiny_model

BATCH = {"prompts_per_update": 4, "samples_per_prompt": 4, "loss_reduction": "sequence-sum"}
SINGLE = {"prompts_per_update": 16, "samples_per_prompt": 1}
ESTIMATORS = [
    ("reinforce (KL k1 in reward)", "reinforce", {**SINGLE}, 1.0),
    ("rloo (KL k1 in reward)", "rloo", {}, 1.0),
    ("ppo, γ=λ=1, random critic, no whitening", "ppo", {**SINGLE, "normalize_advantages": False}, 1.0),
    ("grpo, mean only (vs (K−1)/K ∇J)", "grpo", {"scale_rewards": "none", "kl_in": "reward"}, 0.75),
    ("grpo, mean only (vs ∇J)", "grpo", {"scale_rewards": "none", "kl_in": "reward"}, 1.0),
    ("grpo, mean and std", "grpo", {"kl_in": "reward"}, 0.75),
    (
        "KL k3 in the loss: its part vs ∇(−β KL)",
        "grpo",
        {"scale_rewards": "none", "kl_in": "loss", "kl_estimator": "k3"},
        None,
    ),
    (
        "KL k1 in the loss: its part vs ∇(−β KL)",
        "grpo",
        {"scale_rewards": "none", "kl_in": "loss", "kl_estimator": "k1"},
        None,
    ),
    ("KL k1 in the reward: its part vs ∇(−β KL)", "grpo", {"scale_rewards": "none", "kl_in": "reward"}, None),
    ("rloo, token-mean reduction", "rloo", {"loss_reduction": "token-mean"}, 1.0),
    ("rloo, sequence-mean reduction", "rloo", {"loss_reduction": "sequence-mean"}, 1.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=400)
    parser.add_argument("--kl-coef", type=float, default=0.2)
    parser.add_argument("--out", default="benchmarks/results/lm_exact.json")
    parser.add_argument("--only", help="run only the estimators whose label contains this text")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for label, algo, settings, scale in ESTIMATORS:
        if args.only and args.only not in label:
            continue
        per_seed = []
        for seed in range(3):
            bandit = LMBandit(seed=seed)
            model, ref = tiny_model(seed=10 + seed, value_head=True), tiny_model(seed=20 + seed)
            with torch.no_grad():
                model.value_head.weight.normal_(0, 0.3)
            exact = exact_gradient(model, ref, bandit, args.kl_coef)
            estimates = estimator_gradients(
                algo, model, ref, bandit, args.replications, seed=seed, kl_coef=args.kl_coef, **{**BATCH, **settings}
            )
            if scale is None:
                # the KL part alone: minus the same estimator without KL on the same samples, against the
                # exact gradient of −β KL(π‖π_ref)
                without = estimator_gradients(
                    algo, model, ref, bandit, args.replications, seed=seed, kl_coef=0.0, **{**BATCH, **settings}
                )
                exact_kl = exact - exact_gradient(model, ref, bandit, 0.0)
                if settings.get("kl_in") == "reward":  # KL in the reward is group-centred too: (K−1)/K
                    exact_kl = exact_kl * 0.75
                check = compare((estimates - without) * bandit.response_length, exact_kl, seed=seed)
            else:
                check = compare(estimates * bandit.response_length, exact * scale, seed=seed)
            per_seed.append(check)
        rows.append(
            {
                "estimator": label,
                "max_abs_z": [round(c.max_abs_z, 2) for c in per_seed],
                "relative_bias": [round(c.relative_bias, 3) for c in per_seed],
                "cosine": [round(c.cosine, 3) for c in per_seed],
            }
        )
        r = rows[-1]
        print(
            f"| {label} | {' / '.join(f'{z:.1f}' for z in r['max_abs_z'])} "
            f"| {' / '.join(f'{b:+.3f}' for b in r['relative_bias'])} "
            f"| {' / '.join(f'{c:.3f}' for c in r['cosine'])} |",
            flush=True,
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"kl_coef": args.kl_coef, "replications": args.replications, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
