"""Token estimators against the exact gradient of an enumerable LM bandit.

The policy is a real (tiny) TransformerLM over a 4-token vocabulary with responses
of at most 3 tokens (40 responses in all, of lengths 1–3). Unbiased estimators must
match ∇J_β within a few standard errors along several directions, under several seeds;
where theory says an estimator is biased, the check must see the bias.
"""

import pytest
import torch

from policygrad.lm.exact import (
    LMBandit,
    compare,
    estimator_gradients,
    exact_gradient,
    exact_objective,
    kl_optimum,
    response_distribution,
    tiny_model,
)

REPS = 150
SMALL = {"prompts_per_update": 4, "samples_per_prompt": 4, "loss_reduction": "sequence-sum"}


@pytest.fixture(scope="module", params=[0, 1, 2])
def setup(request):
    torch.set_num_threads(1)
    seed = request.param
    bandit = LMBandit(seed=seed)
    return seed, bandit, tiny_model(seed=10 + seed, value_head=True), tiny_model(seed=20 + seed)


def test_enumeration_is_a_distribution_and_gradient_matches_finite_differences():
    bandit = LMBandit()
    model, ref = tiny_model(seed=1), tiny_model(seed=2)
    assert len(bandit.rewards) == 1 + 3 + 9 + 27 - 0  # <eos> after 0, 1, 2 tokens, or 3 tokens
    assert response_distribution(model, bandit).sum().item() == pytest.approx(1.0, abs=1e-5)
    grad = exact_gradient(model, ref, bandit, 0.1)
    param = model.head.weight
    offset = sum(p.numel() for n, p in model.named_parameters() if n < "head")  # flat order follows named_parameters
    names = [n for n, _ in model.named_parameters()]
    offset = sum(p.numel() for n, p in model.named_parameters() if names.index(n) < names.index("head.weight"))
    with torch.no_grad():
        eps = 1e-3
        param[1, 2] += eps
        up = exact_objective(model, ref, bandit, 0.1).item()
        param[1, 2] -= 2 * eps
        down = exact_objective(model, ref, bandit, 0.1).item()
        param[1, 2] += eps
    assert grad[offset + 1 * param.shape[1] + 2].item() == pytest.approx((up - down) / (2 * eps), rel=2e-2, abs=1e-4)


UNBIASED = [
    ("reinforce", {"samples_per_prompt": 1, "prompts_per_update": 16}),
    ("rloo", {}),
    ("ppo", {"samples_per_prompt": 1, "prompts_per_update": 16, "normalize_advantages": False}),
]


@pytest.mark.parametrize("algo,settings", UNBIASED, ids=[a for a, _ in UNBIASED])
def test_unbiased_estimators_match_exact_gradient(setup, algo, settings, kl_coef=0.2):
    seed, bandit, model, ref = setup
    with torch.no_grad():  # a non-trivial critic: PPO's baseline V(s_t) must not bias the gradient
        model.value_head.weight.normal_(0, 0.3)
    estimates = estimator_gradients(algo, model, ref, bandit, REPS, seed=seed, kl_coef=kl_coef, **{**SMALL, **settings})
    check = compare(estimates * bandit.response_length, exact_gradient(model, ref, bandit, kl_coef), seed=seed)
    assert check.max_abs_z < 4.5, (algo, check)
    assert check.cosine > 0.8, (algo, check)


def test_grpo_group_mean_shrinks_the_gradient_by_k_minus_one_over_k(setup):
    seed, bandit, model, ref = setup
    estimates = estimator_gradients(
        "grpo", model, ref, bandit, REPS, seed=seed, kl_coef=0.0, scale_rewards="none", **SMALL
    )
    exact = exact_gradient(model, ref, bandit, 0.0)
    check = compare(estimates * bandit.response_length, exact * 3 / 4, seed=seed)
    assert check.max_abs_z < 4.5, check  # unbiased for (K−1)/K ∇J
    shrunk = compare(estimates * bandit.response_length, exact, seed=seed)
    assert shrunk.relative_bias == pytest.approx(-0.25, abs=0.1)


def test_biased_choices_are_detected():
    """Std normalisation, token-mean over ragged lengths and k3 in the loss are biased, and the check sees it.

    Each is compared with an unbiased (or known) estimator on the same samples, so the
    difference isolates the bias with little noise.
    """
    bandit = LMBandit(seed=0)
    model, ref = tiny_model(seed=10), tiny_model(seed=20)
    exact = exact_gradient(model, ref, bandit, 0.0)
    zero = torch.zeros_like(exact)
    mean_only = estimator_gradients("grpo", model, ref, bandit, REPS, kl_coef=0.0, scale_rewards="none", **SMALL)
    with_std = estimator_gradients("grpo", model, ref, bandit, REPS, kl_coef=0.0, **SMALL)
    assert compare(with_std - mean_only, zero, scale=exact / 3).max_abs_z > 6
    sequence_sum = estimator_gradients("rloo", model, ref, bandit, REPS, kl_coef=0.0, **SMALL)
    token_mean = estimator_gradients(
        "rloo", model, ref, bandit, REPS, kl_coef=0.0, **{**SMALL, "loss_reduction": "token-mean"}
    )
    assert compare(token_mean - sequence_sum, zero, scale=exact / 3).max_abs_z > 6
    # k3 as a loss: the KL part of the estimate against the exact ∇(−β KL(π‖π_ref))
    beta = 0.5
    exact_kl_part = exact_gradient(model, ref, bandit, beta) - exact
    k3 = estimator_gradients(
        "grpo", model, ref, bandit, REPS, kl_coef=beta, scale_rewards="none", kl_estimator="k3", **SMALL
    )
    check = compare((k3 - mean_only) * bandit.response_length, exact_kl_part)
    assert check.max_abs_z > 6, check


def test_training_with_kl_penalty_converges_to_the_regularised_optimum():
    """RLOO with β·KL in the reward drives π(y) to π*(y) ∝ π_ref(y) e^{r(y)/β} over all 40 responses."""
    import copy

    from policygrad.lm.algorithms import rloo
    from policygrad.lm.generation import generate, sampling_uniforms, score
    from policygrad.lm.rollout import build_rollout

    torch.set_num_threads(1)
    bandit = LMBandit(seed=3)
    ref = tiny_model(seed=5)
    model = copy.deepcopy(ref)  # RL fine-tuning starts from the reference
    beta, lr, steps = 0.5, 0.02, 300
    target = kl_optimum(ref, bandit, beta)
    cfg = rloo.Config(
        prompts_per_update=16, samples_per_prompt=8, kl_coef=beta, loss_reduction="sequence-sum", max_grad_norm=0.0
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    start_tv = 0.5 * (response_distribution(model, bandit) - target).abs().sum().item()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * (1 - step / steps) + 1e-4
        prompts = bandit.prompts(cfg.batch_size, g)
        samples = generate(model, prompts, 3, sampling_uniforms(g, cfg.batch_size, 3))
        with torch.no_grad():
            ref_lp = score(ref, prompts, samples.responses).log_probs
        groups = torch.arange(16).repeat_interleave(8)
        rollout = build_rollout(samples, bandit.reward(prompts, samples.responses), ref_lp, groups, beta, True)
        rloo.update(model, optimizer, rollout, cfg, step)
    tv = 0.5 * (response_distribution(model, bandit) - target).abs().sum().item()
    assert start_tv > 0.2
    assert tv < 0.06, (start_tv, tv)
