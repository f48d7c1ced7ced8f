"""GRPO's loss family (TRL's loss_type, scale_rewards, clip-higher, GSPO, CISPO, DAPO's sampling and penalty).

Each reduction and surrogate against a hand-computed value, and every variant training
the sum task from the command line into a clean run folder.
"""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from policygrad.cli import main
from policygrad.lm.algorithms.grpo import group_normalised
from policygrad.lm.dynamic_sampling import groups_with_signal, sample_with_signal
from policygrad.lm.generation import Samples
from policygrad.lm.losses import loss_type_reduction, token_policy_loss
from policygrad.lm.reward_shaping import soft_overlong_penalty
from policygrad.lm.rollout import ended_with_eos
from policygrad.lm.tasks import EOS, PAD

# two responses, of 1 and 3 tokens (budget T = 3), advantages +2 and −1
MASK = torch.tensor([[True, False, False], [True, True, True]])
ADVANTAGES = torch.tensor([[2.0, 2.0, 2.0], [-1.0, -1.0, -1.0]], dtype=torch.float64) * MASK


def loss_and_grad(loss_type, log_probs=None, old=None, **kwargs):
    log_probs = (torch.zeros(2, 3, dtype=torch.float64) if log_probs is None else log_probs).requires_grad_(True)
    old = log_probs.detach().clone() if old is None else old
    loss, metrics = token_policy_loss(
        log_probs,
        ADVANTAGES,
        MASK,
        loss_type_reduction(loss_type),
        old_log_probs=old,
        clip_coef=0.2,
        cispo=loss_type == "cispo",
        **kwargs,
    )
    loss.backward()
    return loss.item(), log_probs.grad * MASK, metrics


# At ρ = 1 the loss is −Σ A w and its gradient −A·w per token; by hand, for A = (+2 | −1 −1 −1):
HAND = {
    "grpo": (-(2 / 1 - 3 / 3) / 2, [[-1.0, 0, 0], [1 / 6] * 3]),  # (1/N) Σ_i (1/|o_i|) Σ_t
    "bnpo": (-(2 - 3) / 4, [[-0.5, 0, 0], [0.25] * 3]),  # Σ / (1 + 3 tokens)
    "dr_grpo": (-(2 - 3) / 6, [[-1 / 3, 0, 0], [1 / 6] * 3]),  # Σ / (N · T) = Σ / 6
    "dapo": (-(2 - 3) / 4, [[-0.5, 0, 0], [0.25] * 3]),  # one minibatch: the batch's 4 tokens
    "luspo": (-(2 - 3) / 2, [[-1.0, 0, 0], [0.5] * 3]),  # (1/N) Σ_i Σ_t
}


@pytest.mark.parametrize("loss_type", list(HAND))
def test_each_aggregation_matches_the_hand_computed_loss_and_gradient(loss_type):
    loss, grad, _ = loss_and_grad(loss_type)
    expected_loss, expected_grad = HAND[loss_type]
    assert loss == pytest.approx(expected_loss, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64) * MASK)


def test_dapo_divides_by_the_whole_batch_token_count_not_the_minibatch():
    loss, grad, _ = loss_and_grad("dapo", step_tokens=8.0)  # a 16-token batch in 2 minibatches
    assert loss == pytest.approx(-(2 - 3) / 8, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor([[-0.25, 0, 0], [0.125] * 3], dtype=torch.float64) * MASK)


def test_clip_higher_keeps_the_gradient_of_a_positive_advantage_up_to_1_plus_epsilon_high():
    log_probs = torch.full((2, 3), math.log(1.25), dtype=torch.float64)  # ρ = 1.25 everywhere
    old = torch.zeros(2, 3, dtype=torch.float64)
    _, symmetric, metrics = loss_and_grad("bnpo", log_probs.clone(), old)
    assert symmetric[0, 0] == 0.0  # ρ > 1 + 0.2 with A > 0: clipped, no gradient
    assert symmetric[1, 0] == pytest.approx(1.25 / 4)  # A < 0: min picks the unclipped term, ρ·(−A)/4
    _, higher, metrics = loss_and_grad("bnpo", log_probs.clone(), old, clip_high=0.28)
    assert higher[0, 0] == pytest.approx(-2 * 1.25 / 4)  # inside 1 + 0.28: ∂(−ρA/4)/∂log π = −ρA/4
    assert metrics["clip_fraction"] == 0.0


def test_gspo_sequence_ratio_is_the_exp_of_the_mean_token_log_ratio():
    old = torch.zeros(2, 3, dtype=torch.float64)
    log_probs = torch.tensor([[0.05, 0.0, 0.0], [0.3, -0.1, 0.1]], dtype=torch.float64)
    loss, grad, _ = loss_and_grad("grpo", log_probs, old, importance_sampling_level="sequence")
    s0, s1 = math.exp(0.05), math.exp(0.1)  # row 1: mean(0.3, −0.1, 0.1) = 0.1, inside [0.8, 1.2]
    # grpo: −(1/2)[s0·2 + (1/3)·3·s1·(−1)]; ∂s1/∂log π_t = s1/3 for each of row 1's tokens
    assert loss == pytest.approx(-(2 * s0 - s1) / 2, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor([[-s0, 0, 0], [s1 / 6, s1 / 6, s1 / 6]], dtype=torch.float64) * MASK)


def test_cispo_caps_the_detached_weight_and_keeps_every_token_gradient():
    old = torch.zeros(2, 3, dtype=torch.float64)
    log_probs = torch.tensor([[math.log(3.0), 0, 0], [math.log(0.5)] * 3], dtype=torch.float64)
    loss, grad, metrics = loss_and_grad("cispo", log_probs.clone(), old, clip_high=2.0)
    # weights sg(min(ρ, 2)) = 2 and 0.5; loss = −Σ w·A·log π / 4 tokens
    expected = -(2 * 2 * math.log(3.0) + 3 * 0.5 * -1 * math.log(0.5)) / 4
    assert loss == pytest.approx(expected, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor([[-1.0, 0, 0], [0.125] * 3], dtype=torch.float64) * MASK)
    assert metrics["clip_fraction"] == pytest.approx(0.25)


def test_sapo_gate_by_hand():
    old = torch.zeros(2, 3, dtype=torch.float64)
    log_probs = torch.tensor([[0.5, 0, 0], [0.0] * 3], dtype=torch.float64)  # ρ = e^0.5 on row 0, 1 on row 1
    loss, grad, _ = loss_and_grad("sapo", log_probs, old, sapo_temperatures=(1.0, 1.05))
    rho = math.exp(0.5)
    gate = 1 / (1 + math.exp(-(rho - 1)))  # σ(τ(ρ − 1)) with τ_pos = 1 for A = +2
    # grpo's aggregation: −(1/2)[σ(ρ−1)·4·2 + (σ(0)·4/1.05)·(−1)]
    assert loss == pytest.approx(-(gate * 8 - 0.5 * 4 / 1.05) / 2, abs=1e-12)
    # ∂/∂log π: −(1/2)·4·A·σ'·ρ on row 0; row 1 at ρ = 1: σ'(0)·4·(+1)/(2·3) = 1/6 per token
    expected = [[-(8 * gate * (1 - gate) * rho) / 2, 0, 0], [1 / 6] * 3]
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float64) * MASK)


def test_scale_rewards_group_batch_and_none_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5])
    groups = torch.tensor([0, 0, 1, 1])
    centred = torch.tensor([0.5, -0.5, 0.0, 0.0])
    torch.testing.assert_close(group_normalised(rewards, groups, "none", 1e-4), centred)
    group_std = torch.tensor([0.5**0.5] * 2 + [0.0] * 2)  # Bessel: ((0.5² + 0.5²)/1)^½
    torch.testing.assert_close(group_normalised(rewards, groups, "group", 1e-4), centred / (group_std + 1e-4))
    batch_std = ((0.25 + 0.25 + 0 + 0) / 3) ** 0.5  # around the batch mean 0.5
    torch.testing.assert_close(group_normalised(rewards, groups, "batch", 1e-4), centred / (batch_std + 1e-4))


def test_soft_overlong_penalty_by_hand():
    lengths = torch.tensor([5, 6, 7, 8, 10, 11])
    expected = torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0])  # L_max 10, cache 4: the ramp over 7…10
    torch.testing.assert_close(soft_overlong_penalty(lengths, 10, 4), expected)
    assert soft_overlong_penalty(lengths, 10, 0).abs().sum() == 0


def test_truncated_responses_are_those_without_eos():
    responses = torch.tensor([[5, EOS, PAD], [5, 6, 7], [EOS, PAD, PAD]])
    mask = responses != PAD
    assert ended_with_eos(responses, mask).tolist() == [True, False, True]


def fake_samples(scores):
    n = len(scores)
    return Samples(
        prompts=torch.arange(n).unsqueeze(1),
        responses=torch.zeros(n, 2, dtype=torch.long),
        log_probs=torch.zeros(n, 2),
        values=None,
        mask=torch.ones(n, 2, dtype=torch.bool),
    )


def drawing(rounds):
    draws = iter(rounds)

    def draw(groups):
        scores = torch.tensor(next(draws))
        assert len(scores) == 2 * groups  # K = 2: only the missing groups are drawn
        return fake_samples(scores), scores

    return draw


def test_dynamic_sampling_keeps_groups_with_signal_and_refills():
    assert groups_with_signal(torch.tensor([1.0, 1.0, 0.0, 1.0]), 2).tolist() == [False, True]
    # round 1 keeps its second group; round 2 draws the one missing group, which has signal
    _, scores, metrics = sample_with_signal(drawing([[1.0, 1.0, 0.0, 1.0], [0.3, 0.0]]), 2, 2, max_rounds=4)
    assert scores.tolist() == pytest.approx([0.0, 1.0, 0.3, 0.0])
    assert metrics == {"sampling_rounds": 2.0, "signal_fraction": 0.5}
    # out of rounds: topped up with the first all-equal group drawn, same batch shape
    samples, scores, metrics = sample_with_signal(drawing([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0]]), 2, 2, max_rounds=2)
    assert scores.tolist() == [0.0, 1.0, 1.0, 1.0] and samples.prompts.shape[0] == 4


# ----- every variant from the command line -------------------------------------------------
FAST = ["--set", "max_train_seconds=none", "--set", "eval_prompts=32", "--set", "prompts_per_update=6", "--quiet"]
VARIANTS = {
    "grpo": ["loss_type=grpo"],
    "bnpo": ["loss_type=bnpo"],
    "dr_grpo": ["loss_type=dr_grpo", "scale_rewards=none"],
    "dapo": [
        "loss_type=dapo",
        "epsilon_high=0.28",
        "dynamic_sampling=true",
        "soft_punish_cache=1",
        "mask_truncated_completions=true",
    ],
    "cispo": ["loss_type=cispo", "epsilon_high=5.0"],
    "sapo": ["loss_type=sapo", "sapo_temperature_neg=1.1"],
    "luspo": ["loss_type=luspo", "importance_sampling_level=sequence"],
    "gspo": ["loss_type=grpo", "importance_sampling_level=sequence", "epsilon=0.0003", "epsilon_high=0.0004"],
    "batch-scaled": ["scale_rewards=batch", "update_epochs=2", "minibatches=2", "loss_type=dapo"],
}


# the same options on the other algorithms: RLOO (one on-policy step) and PPO (a critic, several epochs)
OTHER_ALGORITHMS = {
    "rloo-dr_grpo": ("rloo", ["loss_type=dr_grpo", "dynamic_sampling=true"]),
    "ppo-dapo-gspo": (
        "ppo",
        [
            "loss_type=dapo",
            "epsilon_high=0.28",
            "importance_sampling_level=sequence",
            "mask_truncated_completions=true",
        ],
    ),
}
CASES = {**{name: ("grpo", settings) for name, settings in VARIANTS.items()}, **OTHER_ALGORITHMS}


@pytest.mark.parametrize("variant", list(CASES))
def test_every_variant_trains_sum_from_the_cli_into_a_clean_run_folder(tmp_path, sum_reference, variant):
    run = tmp_path / variant
    algo, variant_settings = CASES[variant]
    settings = [arg for s in variant_settings for arg in ("--set", s)]
    argv = ["lm", "train", algo, "sum", "--ref", str(sum_reference), "--out", str(run), "--updates", "3"]
    assert main([*argv, *FAST, *settings]) == 0
    assert sorted(p.name for p in run.iterdir()) == [  # nothing half-written left behind
        ".lock",
        "checkpoints",
        "config.json",
        "metrics.csv",
        "policy",
        "reference",
        "summary.json",
        "tensorboard",
    ]
    saved = json.loads((run / "config.json").read_text())["config"]
    for setting in variant_settings:
        key, value = setting.split("=")
        assert str(saved[key]).lower() == value.lower()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["updates"] == 3 and math.isfinite(summary["final_reward_mean"])
    policy = load_file(str(run / "policy" / "model.safetensors"))
    reference = load_file(str(sum_reference / "model.safetensors"))
    assert any(not torch.equal(policy[k], reference[k]) for k in reference), "the policy did not move"


@pytest.mark.parametrize(
    "settings,message",
    [
        (["loss_type=drgrpo"], "invalid loss_type"),
        (["loss_type=dapo", "loss_reduction=sequence-mean"], "sets the aggregation itself"),
        (["scale_rewards=std"], "invalid scale_rewards"),
        (["importance_sampling_level=seq"], "invalid importance_sampling_level"),
    ],
)
def test_bad_variant_settings_are_one_clear_line(settings, message, capsys):
    argv = ["lm", "train", "grpo", "sum", *[arg for s in settings for arg in ("--set", s)]]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_dynamic_sampling_needs_groups(capsys):
    assert main(["lm", "train", "reinforce", "sum", "--set", "dynamic_sampling=true"]) != 0
    assert "samples_per_prompt >= 2" in capsys.readouterr().err
