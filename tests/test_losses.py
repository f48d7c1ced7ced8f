"""Each loss against hand-computed values; gradients go only where they should."""

import math

import pytest
import torch

from policygrad.agent import Agent, AgentSpec
from policygrad.losses import (
    clipped_surrogate_loss,
    entropy_bonus,
    explained_variance,
    masked_mean,
    policy_gradient_loss,
    value_loss,
)


def test_masked_mean_ignores_padding():
    x = torch.tensor([1.0, 2.0, 100.0])
    assert masked_mean(x, torch.tensor([True, True, False])).item() == 1.5


def test_policy_gradient_loss_hand_value():
    log_probs = torch.tensor([-1.0, -2.0, -3.0])
    adv = torch.tensor([1.0, 2.0, 50.0])
    loss, metrics = policy_gradient_loss(log_probs, adv, torch.tensor([True, True, False]))
    # -((-1)(1) + (-2)(2)) / 2 = 2.5; the masked third entry does not count.
    assert loss.item() == 2.5 and metrics["policy_loss"] == 2.5


def test_clipped_surrogate_hand_values():
    # ratios 1.5 (adv +1, clipped to 1.2), 0.5 (adv -1: min(-0.5, -0.8) = -0.8), 1.1 (adv +2, inside).
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 0.5, 1.1]))
    adv = torch.tensor([1.0, -1.0, 2.0])
    loss, metrics = clipped_surrogate_loss(new, old, adv, 0.2, torch.ones(3, dtype=torch.bool))
    expected = -(1.2 - 0.8 + 2.2) / 3
    assert abs(loss.item() - expected) < 1e-6
    assert abs(metrics["clip_fraction"] - 2 / 3) < 1e-6
    ratio = torch.tensor([1.5, 0.5, 1.1])
    assert abs(metrics["approx_kl"] - ((ratio - 1) - ratio.log()).mean().item()) < 1e-6


def test_ppo_gradient_equals_policy_gradient_at_ratio_one():
    torch.manual_seed(0)
    agent = Agent(AgentSpec(obs_dim=3, discrete=True, action_dim=4, hidden_sizes=(8,), activation="tanh", critic=False))
    obs = torch.randn(16, 3)
    actions = torch.randint(0, 4, (16,))
    adv = torch.randn(16)
    mask = torch.ones(16, dtype=torch.bool)

    def grads(use_clip: bool) -> list[torch.Tensor]:
        agent.zero_grad()
        log_probs = agent.distribution(obs).log_prob(actions)
        if use_clip:
            loss, _ = clipped_surrogate_loss(log_probs, log_probs.detach(), adv, 0.2, mask)
        else:
            loss, _ = policy_gradient_loss(log_probs, adv, mask)
        loss.backward()
        return [p.grad.clone() for p in agent.parameters() if p.grad is not None]

    for a, b in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(a, b)


def test_value_loss_plain_and_clipped():
    values = torch.tensor([2.0, 0.0])
    returns = torch.tensor([0.0, 1.0])
    mask = torch.ones(2, dtype=torch.bool)
    loss, _ = value_loss(values, returns, mask)
    assert loss.item() == 0.5 * (4.0 + 1.0) / 2
    old = torch.tensor([1.0, 0.0])
    # Clipped prediction for entry 0: 1 + clamp(1, -0.5, 0.5) = 1.5 → error 2.25 < 4, max keeps 4.
    # Entry 1: unchanged. So the clipped loss equals the plain one here...
    clipped, _ = value_loss(values, returns, mask, old, 0.5)
    assert clipped.item() == loss.item()
    # ...but when the move goes toward the target, clipping makes the loss larger.
    values2 = torch.tensor([0.1, 0.0])
    old2 = torch.tensor([2.0, 0.0])
    plain2, _ = value_loss(values2, returns, mask)
    clipped2, _ = value_loss(values2, returns, mask, old2, 0.5)
    assert abs(clipped2.item() - 0.5 * (1.5**2 + 1.0) / 2) < 1e-6 and clipped2.item() > plain2.item()


def test_entropy_and_explained_variance():
    ent, metrics = entropy_bonus(torch.tensor([1.0, 3.0]), torch.ones(2, dtype=torch.bool))
    assert ent.item() == 2.0 and metrics["entropy"] == 2.0
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mask = torch.ones(4, dtype=torch.bool)
    assert explained_variance(returns, returns, mask) == 1.0
    assert abs(explained_variance(torch.full((4,), 2.5), returns, mask)) < 1e-6


class ReportsCuda(torch.Tensor):
    """A CPU tensor that says it lives on CUDA and has no ``.numpy()``: only a torch code path can read it."""

    @property
    def device(self) -> torch.device:
        return torch.device("cuda")

    def numpy(self, *args, **kwargs):
        raise AssertionError("took the numpy branch")


def reference_explained_variance(values, returns, mask):
    """1 − Var[R − V] / Var[R] over the valid steps, as plain Python loops."""
    flat = zip(values.flatten().tolist(), returns.flatten().tolist(), mask.flatten().tolist(), strict=True)
    pairs = [(v, r) for v, r, m in flat if m]

    def variance(xs):
        mean = sum(xs) / len(xs)
        return sum((x - mean) ** 2 for x in xs) / len(xs)

    var_returns = variance([r for _, r in pairs])
    return math.nan if var_returns == 0 else 1.0 - variance([r - v for v, r in pairs]) / var_returns


OFF_CPU = [
    pytest.param(lambda x: x.as_subclass(ReportsCuda), id="torch-branch-on-cpu"),
    pytest.param(
        lambda x: x.cuda(), id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
    ),
]


@pytest.mark.parametrize("off_cpu", OFF_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (4, 9)])
def test_explained_variance_torch_branch_matches_numpy_branch_and_loop(off_cpu, dtype, shape):
    g = torch.Generator().manual_seed(len(shape))
    returns = torch.randn(*shape, generator=g, dtype=dtype)
    values = returns + 0.5 * torch.randn(*shape, generator=g, dtype=dtype)
    mask = torch.rand(*shape, generator=g) < 0.7
    mask.view(-1)[:2] = True
    values[~mask] = 1e3  # padding must not count
    expected = reference_explained_variance(values, returns, mask)
    numpy_branch = explained_variance(values, returns, mask)
    torch_branch = explained_variance(off_cpu(values), off_cpu(returns), off_cpu(mask))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert numpy_branch == pytest.approx(expected, rel=tol, abs=tol)
    assert torch_branch == pytest.approx(expected, rel=tol, abs=tol)
    constant = torch.full(shape, 2.0, dtype=dtype)
    assert math.isnan(explained_variance(off_cpu(values), off_cpu(constant), off_cpu(mask)))  # Var[R] = 0


def test_reports_cuda_reaches_the_torch_branch():
    """The stand-in really hides numpy: the numpy branch would fail on it."""
    x = torch.ones(3).as_subclass(ReportsCuda)
    assert x.device.type == "cuda"
    with pytest.raises(AssertionError, match="numpy branch"):
        x.numpy()


def test_policy_loss_reaches_only_actor_and_value_loss_only_critic():
    torch.manual_seed(0)
    agent = Agent(
        AgentSpec(
            obs_dim=3,
            discrete=False,
            action_dim=2,
            hidden_sizes=(8,),
            activation="tanh",
            critic=True,
            action_low=(-1.0, -1.0),
            action_high=(1.0, 1.0),
        )
    )
    obs = torch.randn(5, 3)
    actions = torch.randn(5, 2)
    mask = torch.ones(5, dtype=torch.bool)
    log_probs, _, values = agent.evaluate(obs, actions)
    loss, _ = policy_gradient_loss(log_probs, torch.randn(5), mask)
    loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in agent.critic.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    assert agent.log_std.grad is not None
    agent.zero_grad(set_to_none=True)
    log_probs, _, values = agent.evaluate(obs, actions)
    v_loss, _ = value_loss(values, torch.randn(5), mask)
    v_loss.backward()
    assert all(p.grad is None for p in agent.actor.parameters()) and agent.log_std.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.critic.parameters())


def test_normalize_rows_standardises_each_row_as_normalize_does():
    from policygrad.losses import normalize, normalize_rows

    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 16, generator=g) * 3 + 1
    mask = torch.rand(5, 16, generator=g) > 0.3
    mask[4] = False  # a row of padding alone stays finite
    rows = normalize_rows(x, mask)
    for i in range(4):
        torch.testing.assert_close(rows[i], normalize(x[i], mask[i]), rtol=1e-5, atol=1e-6)
    assert torch.isfinite(rows).all()
