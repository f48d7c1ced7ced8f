"""Token loss reductions against slow loops, KL estimators, token rollouts and the advantages of each algorithm."""

import pytest
import torch

from policygrad.lm.algorithms import grpo, ppo, reinforce, rloo
from policygrad.lm.generation import Samples
from policygrad.lm.losses import kl_loss, kl_per_token, reduction_weights, sequence_kl, token_policy_loss
from policygrad.lm.rollout import build_rollout, last_token_mask


def ragged(seed=0, n=5, t=6):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([1, 6, 3, 2, 6][:n])
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    return torch.randn(n, t, generator=g, dtype=torch.float64), mask


def slow_reduce(x, mask, reduction):
    n, t = x.shape
    rows = [[x[i, j].item() for j in range(t) if mask[i, j]] for i in range(n)]
    if reduction == "token-mean":
        return sum(sum(r) for r in rows) / sum(len(r) for r in rows)
    if reduction == "sequence-mean":
        return sum(sum(r) / len(r) for r in rows) / n
    return sum(sum(r) for r in rows) / (n * t)


@pytest.mark.parametrize("reduction", ["token-mean", "sequence-mean", "sequence-sum"])
def test_reduction_weights_match_slow_loops(reduction):
    from policygrad.losses import masked_mean

    x, mask = ragged()
    weights = reduction_weights(mask, reduction).double()
    assert masked_mean(x * weights, mask).item() == pytest.approx(slow_reduce(x, mask, reduction), rel=1e-6)


@pytest.mark.parametrize("reduction", ["token-mean", "sequence-mean", "sequence-sum"])
def test_policy_loss_gradient_is_the_weighted_score_function(reduction):
    x, mask = ragged(1)
    log_probs = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    loss, _ = token_policy_loss(log_probs, x, mask, reduction)
    loss.backward()
    expected = -x * reduction_weights(mask, reduction).double() / mask.sum()
    torch.testing.assert_close(log_probs.grad, expected)
    # clipped version at ratio 1 has the same gradient
    log_probs.grad = None
    loss, metrics = token_policy_loss(log_probs, x, mask, reduction, old_log_probs=log_probs.detach(), clip_coef=0.2)
    loss.backward()
    torch.testing.assert_close(log_probs.grad, expected)
    assert metrics["clip_fraction"] == 0.0


def test_kl_estimators():
    log_p = torch.log(torch.tensor([[0.5, 0.25]]))
    log_ref = torch.log(torch.tensor([[0.25, 0.25]]))
    torch.testing.assert_close(kl_per_token(log_p, log_ref, "k1"), torch.tensor([[0.6931472, 0.0]]))
    # k3 = r − 1 − log r with r = π_ref/π = 0.5: 0.5 − 1 + log 2
    torch.testing.assert_close(kl_per_token(log_p, log_ref, "k3"), torch.tensor([[0.1931472, 0.0]]))
    # both are unbiased for KL(p‖q) of one categorical; k3 is never negative
    g = torch.Generator().manual_seed(0)
    p, q = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.2, 0.3, 0.5])
    exact = (p * (p / q).log()).sum()
    draws = torch.multinomial(p, 200000, replacement=True, generator=g)
    for name in ("k1", "k3"):
        estimate = kl_per_token(p.log()[draws], q.log()[draws], name)
        assert abs(estimate.mean() - exact) < 4 * estimate.std() / 200000**0.5
    assert (kl_per_token(p.log()[draws], q.log()[draws], "k3") >= 0).all()


def test_kl_loss_and_sequence_kl_respect_the_mask():
    log_p = torch.tensor([[-1.0, -2.0, -9.0]], requires_grad=True)
    log_ref = torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    loss, _ = kl_loss(log_p, log_ref, mask, "k1")
    assert loss.item() == pytest.approx((0.5 - 1.0) / 2)
    assert sequence_kl(log_p.detach(), log_ref, mask)["kl_k1"] == pytest.approx(-0.5)


def toy_rollout(kl_coef=0.0, values=None):
    # 2 prompts × K = 3 responses, lengths 1–3
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    log_probs = torch.log(torch.full((6, 3), 0.5)) * mask
    samples = Samples(torch.zeros(6, 2, dtype=torch.long), torch.zeros(6, 3, dtype=torch.long), log_probs, values, mask)
    scores = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.4, 0.9])
    ref = torch.log(torch.full((6, 3), 0.25))
    return build_rollout(samples, scores, ref, torch.tensor([0, 0, 0, 1, 1, 1]), kl_coef, True), scores


def test_token_rollout_puts_reward_on_last_token_and_kl_on_every_token():
    rollout, scores = toy_rollout(kl_coef=0.1)
    last = last_token_mask(rollout.mask)
    assert last.sum(1).tolist() == [1] * 6 and rollout.terminated.equal(last)
    kl = 0.5 / 0.25  # π/π_ref per token
    expected = (last.float() * scores[:, None] - 0.1 * torch.log(torch.tensor(kl))) * rollout.mask
    torch.testing.assert_close(rollout.rewards, expected)


def test_reinforce_rloo_grpo_advantages_hand_worked():
    rollout, scores = toy_rollout()
    cfg_r, cfg_l = reinforce.Config(), rloo.Config(samples_per_prompt=3)
    torch.testing.assert_close(reinforce.advantages(rollout, cfg_r), scores[:, None] * rollout.mask)
    # leave-one-out: response 0 of group 0 is baselined by (0 + 0.5)/2
    loo = torch.tensor([1.0 - 0.25, 0.0 - 0.75, 0.5 - 0.5, 0.2 - 0.65, 0.4 - 0.55, 0.9 - 0.3])
    torch.testing.assert_close(rloo.advantages(rollout, cfg_l), loo[:, None] * rollout.mask)
    centred = torch.tensor([0.5, -0.5, 0.0, -0.3, -0.1, 0.4])
    plain = grpo.advantages(rollout, grpo.Config(samples_per_prompt=3, scale_rewards="none"))
    torch.testing.assert_close(plain, centred[:, None] * rollout.mask)
    # the group mean includes the response itself: centred = (K−1)/K × leave-one-out
    torch.testing.assert_close(centred, loo * 2 / 3)
    # Bessel-corrected std, as TRL's nanstd
    std = torch.tensor([(0.5**2 + 0.5**2) / 2, (0.3**2 + 0.1**2 + 0.4**2) / 2]).sqrt().repeat_interleave(3)
    scaled = grpo.advantages(rollout, grpo.Config(samples_per_prompt=3, std_eps=1e-4))
    torch.testing.assert_close(scaled, (centred / (std + 1e-4))[:, None] * rollout.mask)


def test_ppo_gae_with_gamma_lambda_one_is_return_minus_value():
    values = torch.tensor([[0.3, 0.2, 0.0]] * 6)
    rollout, scores = toy_rollout(values=values)
    cfg = ppo.Config(normalize_advantages=False)
    advantages, returns = ppo.advantages_and_returns(rollout, cfg)
    torch.testing.assert_close(advantages, (scores[:, None] - rollout.values) * rollout.mask)
    torch.testing.assert_close(returns * rollout.mask, scores[:, None] * rollout.mask)
