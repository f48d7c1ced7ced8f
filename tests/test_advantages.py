"""gae against a slow reference loop, hand-worked cases, and the chain identities."""

import itertools

import pytest
import torch

from policygrad.advantages import gae, returns_to_go


def slow_gae(rewards, values, next_values, terminated, done, gamma, lam):
    """The obvious per-rollout loop, written independently of the vectorised version."""
    n, t_len = rewards.shape
    adv = torch.zeros_like(rewards)
    for i in range(n):
        last = 0.0
        for t in reversed(range(t_len)):
            bootstrap = 0.0 if terminated[i, t] else float(next_values[i, t])
            delta = float(rewards[i, t]) + gamma * bootstrap - float(values[i, t])
            last = delta + (0.0 if done[i, t] else gamma * lam * last)
            adv[i, t] = last
    return adv


@pytest.mark.parametrize(
    "gamma,lam,length,n,dtype",
    list(
        itertools.product([0.9, 0.99, 1.0], [0.0, 0.5, 0.95, 1.0], [1, 3, 200], [1, 4], [torch.float32, torch.float64])
    ),
)
def test_gae_matches_slow_loop(gamma, lam, length, n, dtype):
    g = torch.Generator().manual_seed(length * 31 + n)
    rewards = torch.randn(n, length, generator=g, dtype=dtype)
    values = torch.randn(n, length, generator=g, dtype=dtype)
    next_values = torch.randn(n, length, generator=g, dtype=dtype)
    terminated = torch.rand(n, length, generator=g) < 0.1
    truncated = (torch.rand(n, length, generator=g) < 0.1) & ~terminated
    done = terminated | truncated
    adv, ret = gae(rewards, values, next_values, terminated, done, gamma, lam)
    expected = slow_gae(rewards, values, next_values, terminated, done, gamma, lam)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert adv.dtype == dtype
    torch.testing.assert_close(adv, expected, atol=tol * length, rtol=tol)
    torch.testing.assert_close(ret, adv + values)


TORCH_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize(
    "gamma,lam,length,dtype",
    list(itertools.product([0.9, 1.0], [0.0, 0.95, 1.0], [1, 3, 200], [torch.float32, torch.float64])),
)
def test_gae_torch_branch_matches_numpy_branch_and_slow_loop(gamma, lam, length, dtype, device, monkeypatch):
    """Values that need gradients (or live off the CPU) take gae's torch loop, not the numpy one."""
    g = torch.Generator().manual_seed(length * 7 + int(lam * 100))
    rewards, values, next_values = (torch.randn(3, length, generator=g, dtype=dtype) for _ in range(3))
    terminated = torch.rand(3, length, generator=g) < 0.1
    done = terminated | (torch.rand(3, length, generator=g) < 0.1)
    numpy_adv, numpy_ret = gae(rewards, values, next_values, terminated, done, gamma, lam)

    def numpy_branch_taken(*args):
        raise AssertionError("gae took the numpy branch")

    monkeypatch.setattr("policygrad.advantages._gae_numpy", numpy_branch_taken)
    on_device = [x.to(device, copy=True) for x in (rewards, values, next_values, terminated, done)]
    on_device[1].requires_grad_(True)
    adv, ret = gae(*on_device, gamma, lam)
    assert adv.dtype == dtype and adv.device.type == device and adv.requires_grad
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(adv.detach().cpu(), numpy_adv, atol=tol * length, rtol=tol)
    torch.testing.assert_close(ret.detach().cpu(), numpy_ret, atol=tol * length, rtol=tol)
    expected = slow_gae(rewards, values, next_values, terminated, done, gamma, lam)
    loose = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(adv.detach().cpu(), expected, atol=loose * length, rtol=loose)
    # The last step's A_T = δ_T = r_T + γV(s_{T+1}) − V(s_T): gradient −1 on V(s_T), 0 on every earlier V.
    (value_grad,) = torch.autograd.grad(adv[:, -1].sum(), on_device[1])
    expected_grad = torch.zeros(3, length, dtype=dtype)
    expected_grad[:, -1] = -1.0
    torch.testing.assert_close(value_grad.cpu(), expected_grad)


def test_hand_computed_three_steps():
    # r = (1, 2, 3), V = (0.5, 1, 1.5), V(s_3) = 2, gamma 0.5, lam 0.5, no episode end.
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[0.5, 1.0, 1.5]])
    nv = torch.tensor([[1.0, 1.5, 2.0]])
    f = torch.zeros(1, 3, dtype=torch.bool)
    adv, _ = gae(r, v, nv, f, f, 0.5, 0.5)
    d2 = 3 + 0.5 * 2 - 1.5  # 2.5
    d1 = 2 + 0.5 * 1.5 - 1.0  # 1.75
    d0 = 1 + 0.5 * 1.0 - 0.5  # 1.0
    a2 = d2
    a1 = d1 + 0.25 * a2
    a0 = d0 + 0.25 * a1
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2]]))


def test_termination_on_last_step_does_not_bootstrap():
    r = torch.tensor([[1.0, 1.0]])
    v = torch.zeros(1, 2)
    nv = torch.tensor([[0.0, 100.0]])
    term = torch.tensor([[False, True]])
    adv, _ = gae(r, v, nv, term, term, 0.9, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[1.9, 1.0]]))


def test_truncation_mid_batch_bootstraps_from_final_value_and_stops():
    # Episode 1: steps 0-1, truncated at step 1 with V(final obs) = 10. Episode 2 starts at step 2.
    r = torch.tensor([[1.0, 1.0, 5.0]])
    v = torch.zeros(1, 3)
    nv = torch.tensor([[0.0, 10.0, 0.0]])
    term = torch.zeros(1, 3, dtype=torch.bool)
    done = torch.tensor([[False, True, False]])
    adv, _ = gae(r, v, nv, term, done, 0.5, 1.0)
    # a1 = 1 + 0.5*10 = 6 (bootstrapped); a0 = 1 + 0.5*6 = 4; episode 2 does not leak back.
    torch.testing.assert_close(adv, torch.tensor([[4.0, 6.0, 5.0]]))
    # Treating the truncation as termination would give a1 = 1: the difference is the bootstrap.
    adv_wrong, _ = gae(r, v, nv, done, done, 0.5, 1.0)
    assert adv_wrong[0, 1] == 1.0


def test_rollout_that_stops_mid_episode_bootstraps_last_step():
    r = torch.ones(1, 3)
    v = torch.zeros(1, 3)
    nv = torch.tensor([[0.0, 0.0, 4.0]])
    f = torch.zeros(1, 3, dtype=torch.bool)
    adv, _ = gae(r, v, nv, f, f, 1.0, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[7.0, 6.0, 5.0]]))


def test_chain_identity_lambda1_v0_is_returns_to_go():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 50, generator=g, dtype=torch.float64)
    term = torch.rand(3, 50, generator=g) < 0.05
    gamma = 0.97
    expected = torch.zeros_like(r)
    for i in range(3):
        running = 0.0
        for t in reversed(range(50)):
            running = float(r[i, t]) + (0.0 if term[i, t] else gamma * running)
            expected[i, t] = running
    torch.testing.assert_close(returns_to_go(r, term, term, gamma), expected)
    zeros = torch.zeros_like(r)
    torch.testing.assert_close(gae(r, zeros, zeros, term, term, gamma, 1.0)[0], expected)


def test_chain_identity_lambda1_learned_v_is_return_minus_baseline():
    g = torch.Generator().manual_seed(1)
    r = torch.randn(2, 20, generator=g, dtype=torch.float64)
    v = torch.randn(2, 20, generator=g, dtype=torch.float64)
    term = torch.zeros(2, 20, dtype=torch.bool)
    term[:, -1] = True
    nv = torch.cat([v[:, 1:], torch.zeros(2, 1, dtype=torch.float64)], 1)
    adv, _ = gae(r, v, nv, term, term, 0.9, 1.0)
    torch.testing.assert_close(adv, returns_to_go(r, term, term, 0.9) - v)


def test_chain_identity_lambda0_is_td_error():
    g = torch.Generator().manual_seed(2)
    r, v, nv = (torch.randn(4, 30, generator=g, dtype=torch.float64) for _ in range(3))
    term = torch.rand(4, 30, generator=g) < 0.1
    done = term | (torch.rand(4, 30, generator=g) < 0.1)
    adv, ret = gae(r, v, nv, term, done, 0.95, 0.0)
    torch.testing.assert_close(adv, r + 0.95 * (~term) * nv - v)
    torch.testing.assert_close(ret, r + 0.95 * (~term) * nv)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same"):
        gae(
            torch.zeros(2, 3),
            torch.zeros(2, 4),
            torch.zeros(2, 3),
            torch.zeros(2, 3, dtype=torch.bool),
            torch.zeros(2, 3, dtype=torch.bool),
            0.9,
            0.9,
        )
