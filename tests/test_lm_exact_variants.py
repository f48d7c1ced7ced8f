"""GRPO's loss variants, measured exactly on the LM bandit.

The exact expected update (a sum over every group of K responses) must agree with the
Monte-Carlo mean of the library's own code path within sampling error; the estimators
theory calls unbiased must point along ∇J_β exactly, at the promised scale; the biased
ones must show it; and `policygrad experiment lm-estimators` reports it.
"""

import pytest
import torch

from policygrad.experiments import run_experiment
from policygrad.lm.exact import LMBandit, compare, estimator_gradients, exact_gradient, tiny_model
from policygrad.lm.exact_variants import VARIANTS, expected_coefficients, expected_update, length_penalty

K = 3
BY_NAME = {v.name: v for v in VARIANTS}


@pytest.fixture(scope="module", params=[False, True], ids=["lengths 1-3", "length 3"])
def bandit_and_models(request):
    torch.set_num_threads(1)
    return LMBandit(seed=1, fixed_length=request.param), tiny_model(seed=11), tiny_model(seed=21)


@pytest.mark.parametrize("name", ["rloo (k1 in reward, sequence-sum)", "grpo", "dapo (= cispo at ρ = 1)"])
def test_exact_expectation_matches_the_mean_of_the_library_code_path(bandit_and_models, name, beta=0.1):
    """150 sampled groups through estimator_gradients (generate → rollout → advantages → minibatch_loss)."""
    bandit, model, reference = bandit_and_models
    variant = BY_NAME[name]
    exact = expected_update(variant, model, reference, bandit, beta, K)
    sampled = estimator_gradients(
        variant.algo, model, reference, bandit, 150, seed=3, kl_coef=beta, prompts_per_update=1,
        samples_per_prompt=K, **variant.settings,
    )  # fmt: skip
    check = compare(sampled, exact, seed=3)
    assert check.max_abs_z < 4.5, check


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_the_estimators_theory_calls_unbiased_are(bandit_and_models, beta):
    bandit, model, reference = bandit_and_models
    exact = exact_gradient(model, reference, bandit, beta) / bandit.response_length
    for variant in VARIANTS:
        if variant.unbiased is None:
            continue
        scale = 1.0 if variant.unbiased == "1" else (K - 1) / K
        update = expected_update(variant, model, reference, bandit, beta, K)
        torch.testing.assert_close(update, scale * exact, rtol=0, atol=1e-5 * exact.abs().max().item())


def direction_error(update, exact):
    return (update - (update @ exact) / (exact @ exact) * exact).norm() / update.norm()


def test_the_biased_choices_show_their_bias():
    bandit, model, reference = LMBandit(seed=1), tiny_model(seed=11), tiny_model(seed=21)
    exact0 = exact_gradient(model, reference, bandit, 0.0)
    error = {v.name: direction_error(expected_update(v, model, reference, bandit, 0.0, K), exact0) for v in VARIANTS}
    assert error["dr_grpo (scale_rewards=none)"] < 1e-5  # β = 0: no KL, nothing but the constant normaliser
    assert error["grpo"] > 0.02 and error["grpo, scale_rewards=none"] > 0.02  # 1/|o| and the std
    exact = exact_gradient(model, reference, bandit, 0.1)
    k3_in_loss = expected_update(BY_NAME["dr_grpo (scale_rewards=none)"], model, reference, bandit, 0.1, K)
    assert direction_error(k3_in_loss, exact) > 0.02  # k3 as a loss differentiates KL(π_ref‖π)
    # equal lengths: 1/|o| is a constant, and grpo without the std is dr_grpo up to scale
    fixed = LMBandit(seed=1, fixed_length=True)
    exact_fixed = exact_gradient(model, reference, fixed, 0.0)
    update = expected_update(BY_NAME["grpo, scale_rewards=none"], model, reference, fixed, 0.0, K)
    assert direction_error(update, exact_fixed) < 1e-5


def test_grpo_length_normalisation_penalises_long_wrong_answers_less():
    """Dr. GRPO's claim, exactly: with 1/|o| a wrong answer's push down is ∝ T(K−1)/(K|o|) of the unbiased one."""
    bandit, model, reference = LMBandit(seed=1), tiny_model(seed=11), tiny_model(seed=21)
    tables = {v.name: expected_coefficients(v, model, reference, bandit, 0.0, K) for v in VARIANTS}
    unbiased = tables["rloo (k1 in reward, sequence-sum)"]
    grpo = length_penalty(tables["grpo, scale_rewards=none"], unbiased, bandit)
    for length, ratio in grpo.items():
        assert ratio == pytest.approx(3 * (K - 1) / (K * length), rel=1e-6)
    dr_grpo = length_penalty(tables["dr_grpo (scale_rewards=none)"], unbiased, bandit)
    assert all(ratio == pytest.approx((K - 1) / K, rel=1e-6) for ratio in dr_grpo.values())
    with_std = length_penalty(tables["grpo"], unbiased, bandit)
    assert len(grpo) >= 2 and with_std[min(grpo)] / with_std[max(grpo)] > 1.1  # the std does not undo it


def test_experiment_reports_every_variant(tmp_path):
    paths, report = run_experiment("lm-estimators", out=tmp_path, seed=0, quick=True)
    assert all(path.exists() and path.stat().st_size > 0 for path in paths.values())
    results = report.numbers["results"]
    assert len(results) == 4 and all(set(case) == set(BY_NAME) for case in results.values())
    for case in results.values():
        for name, row in case.items():
            if BY_NAME[name].unbiased:
                assert row["cosine"] > 1 - 1e-6 and row["relative_error"] < 1e-4, (name, row)
    assert set(report.numbers["length_bias"]) == set(BY_NAME)
