"""Exact V, Q, A, J and ∇J of tabular MDPs, checked against independent references."""

import math

import numpy as np
import pytest
import torch

from policygrad.advantages import gae
from policygrad.errors import PolicygradError
from policygrad.exact import (
    TabularMDP,
    bandit,
    chain,
    episodes_to_rollout,
    gridworld,
    random_mdp,
    rock_paper_scissors,
    sample_episode_batches,
    sample_episodes,
    short_corridor,
    short_corridor_value,
)
from policygrad.losses import policy_gradient_loss


def mdps():
    rng = np.random.default_rng(5)
    return [
        ("bandit", bandit([1.0, 0.2, 0.5]), rng.normal(size=(1, 3))),
        ("chain", chain(length=4, slip=0.2), rng.normal(size=(5, 2))),
        ("gridworld", gridworld(), rng.normal(size=(12, 4))),
        ("corridor", short_corridor(), rng.normal(size=(1, 2))),
        ("random", random_mdp(4, 3, seed=1, gamma=0.8), rng.normal(size=(5, 3))),
        ("random-gamma1", random_mdp(3, 2, seed=2, gamma=1.0, termination=0.3), rng.normal(size=(4, 2))),
    ]


def iterative_values(mdp, theta, sweeps=3000):
    """Policy evaluation by repeated Bellman backups, in plain numpy: an independent V."""
    pi = np.asarray(mdp.policy(theta))
    P, R = mdp.P.numpy(), mdp.R.numpy()
    V = np.zeros(mdp.num_states)
    for _ in range(sweeps):
        V = (pi * (R + mdp.gamma * P @ V)).sum(-1)
        V[mdp.terminal.numpy()] = 0.0
    return V


def test_two_armed_bandit_gradient_points_to_the_better_arm():
    mdp = TabularMDP(np.ones((1, 2, 1)), np.array([[1.0, 0.2]]), np.array([1.0]), 0.9)
    grad = mdp.gradient(np.zeros((1, 2)))
    # J = (π·r)/(1 − γ); ∂J/∂θ_a = π_a (r_a − π·r)/(1 − γ) = ±0.5 · 0.4 / 0.1.
    np.testing.assert_allclose(grad, [[2.0, -2.0]], atol=1e-12)
    np.testing.assert_allclose(grad.ravel() / np.linalg.norm(grad), [0.7071, -0.7071], atol=1e-4)
    assert mdp.objective(np.zeros((1, 2))) == pytest.approx(6.0)


@pytest.mark.parametrize("name,mdp,theta", mdps(), ids=[m[0] for m in mdps()])
def test_values_satisfy_the_bellman_equation(name, mdp, theta):
    np.testing.assert_allclose(mdp.values(theta), iterative_values(mdp, theta), atol=1e-8)
    q, v, a = mdp.q_values(theta), mdp.values(theta), mdp.advantages(theta)
    np.testing.assert_allclose((mdp.policy(theta) * q).sum(-1), v, atol=1e-10)
    np.testing.assert_allclose(a, q - v[:, None], atol=1e-12)
    np.testing.assert_allclose((mdp.policy(theta) * a).sum(-1), 0.0, atol=1e-10)
    assert mdp.objective(theta) == pytest.approx(float(mdp.mu0.numpy() @ v))


@pytest.mark.parametrize("name,mdp,theta", mdps(), ids=[m[0] for m in mdps()])
def test_gradient_equals_the_policy_gradient_theorem_and_finite_differences(name, mdp, theta):
    grad = mdp.gradient(theta)
    # Policy-gradient theorem: ∇_θ J = Σ_s d(s) Σ_a ∇_θ π(a|s) Q(s, a); for softmax logits θ[o(s)],
    # ∂/∂θ[o, b] = Σ_{s: o(s) = o} d(s) π(b|s) (Q(s, b) − V(s)).
    d, pi, adv = mdp.visitation(theta), mdp.policy(theta), mdp.advantages(theta)
    closed = np.zeros_like(grad)
    np.add.at(closed, mdp.obs_index.numpy(), d[:, None] * pi * adv)
    np.testing.assert_allclose(grad, closed, atol=1e-9)
    eps = 1e-6
    numeric = np.zeros_like(grad)
    for index in np.ndindex(*grad.shape):
        step = np.zeros_like(theta)
        step[index] = eps
        numeric[index] = (mdp.objective(theta + step) - mdp.objective(theta - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=1e-6)


def test_visitation_counts_discounted_expected_visits():
    mdp, theta = chain(length=3, slip=0.3, gamma=0.8), np.array([[0.0, 0.5]] * 4)
    episodes = sample_episodes(mdp, theta, 40_000, seed=3)
    discount = 0.8 ** torch.arange(episodes.states.shape[1], dtype=torch.float64)
    counts = torch.zeros(mdp.num_states, dtype=torch.float64)
    counts.index_add_(0, episodes.states[episodes.mask], (discount * episodes.mask)[episodes.mask])
    np.testing.assert_allclose(counts.numpy() / 40_000, mdp.visitation(theta), atol=0.02)


def test_sampled_returns_average_to_the_exact_value():
    mdp, theta = gridworld(), np.random.default_rng(0).normal(size=(12, 4))
    episodes = sample_episodes(mdp, theta, 5_000, seed=1)
    discount = mdp.gamma ** torch.arange(episodes.rewards.shape[1], dtype=torch.float64)
    returns = (episodes.rewards * discount).sum(-1)
    stderr = returns.std().item() / math.sqrt(returns.numel())
    assert abs(returns.mean().item() - mdp.objective(theta)) < 4 * stderr
    assert not episodes.truncated.any()


def test_bandit_noise_models_have_the_given_means():
    for noise in ("gaussian", "bernoulli"):
        mdp = bandit([0.9, 0.1], noise=noise)
        theta = np.array([[5.0, -5.0]])  # almost always arm A
        rewards = sample_episodes(mdp, theta, 20_000, seed=0).rewards[:, 0]
        assert rewards.mean().item() == pytest.approx(mdp.objective(theta), abs=0.03)
        assert set(rewards.unique().tolist()) == {0.0, 1.0} if noise == "bernoulli" else rewards.std() > 0.9


def test_short_corridor_matches_sutton_and_barto():
    mdp = short_corridor()
    for p in (0.1, 0.5, 2 - math.sqrt(2), 0.9):
        theta = np.array([[0.0, math.log(p / (1 - p))]])
        assert mdp.objective(theta) == pytest.approx(short_corridor_value(p), rel=1e-10)
    p_star = 2 - math.sqrt(2)
    assert short_corridor_value(p_star) == pytest.approx(-(6 + 4 * math.sqrt(2)))
    np.testing.assert_allclose(mdp.gradient(np.array([[0.0, math.log(p_star / (1 - p_star))]])), 0.0, atol=1e-10)
    assert short_corridor_value(0.0) == short_corridor_value(1.0) == float("-inf")


def test_rock_paper_scissors_worst_case():
    game = rock_paper_scissors()
    assert game.objective(game.zeros()) == pytest.approx(0.0)
    assert game.objective(np.array([[20.0, 0.0, 0.0]])) == pytest.approx(-1.0, abs=1e-6)  # rock loses to paper
    assert game.best_response(np.array([[20.0, 0.0, 0.0]])) == 1
    theta = np.array([[0.5, 0.0, 0.0]])
    # Against the fixed best response the game is a bandit: same objective and gradient.
    as_bandit = game.as_bandit(theta)
    assert game.objective(theta) == pytest.approx(as_bandit.objective(theta))
    np.testing.assert_allclose(game.gradient(theta), as_bandit.gradient(theta), atol=1e-12)


def test_numpy_in_numpy_out_and_torch_in_differentiable_torch_out():
    mdp = random_mdp(3, 2, seed=0)
    theta_np = np.zeros((4, 2))
    assert isinstance(mdp.values(theta_np), np.ndarray) and isinstance(mdp.gradient(theta_np), np.ndarray)
    assert isinstance(mdp.objective(theta_np), float)
    theta = torch.zeros(4, 2, requires_grad=True)
    values = mdp.values(theta)
    assert isinstance(values, torch.Tensor) and values.dtype == torch.float64
    (mdp.mu0 @ values).backward()
    np.testing.assert_allclose(theta.grad.numpy(), mdp.gradient(theta_np), atol=1e-12)
    assert isinstance(mdp.gradient(theta.detach()), torch.Tensor)
    # Transitions may be given as torch tensors too.
    again = TabularMDP(mdp.P, mdp.R, mdp.mu0, mdp.gamma)
    assert again.objective(theta_np) == pytest.approx(mdp.objective(theta_np))


def test_a_batch_of_logits_gives_the_answers_of_each():
    mdp = gridworld()
    batch = np.random.default_rng(2).normal(size=(3, 12, 4))
    np.testing.assert_allclose(mdp.gradient(batch), np.stack([mdp.gradient(t) for t in batch]), atol=1e-12)
    np.testing.assert_allclose(mdp.objective(batch), [mdp.objective(t) for t in batch], atol=1e-12)
    np.testing.assert_allclose(mdp.visitation(batch), np.stack([mdp.visitation(t) for t in batch]), atol=1e-12)
    np.testing.assert_allclose(mdp.advantages(batch), np.stack([mdp.advantages(t) for t in batch]), atol=1e-12)
    # Sampling with one policy per episode: episode n follows batch[n].
    theta = np.zeros((2, 1, 2))
    theta[0, 0, 0] = theta[1, 0, 1] = 30.0
    actions = sample_episodes(bandit([1.0, 0.0]), theta, 2, seed=0).actions[:, 0]
    assert actions.tolist() == [0, 1]


@pytest.mark.parametrize(
    "args,message",
    [
        ((np.ones((2, 2)), np.zeros((2, 2)), np.ones(2) / 2, 0.9), "transitions must have shape (S, A, S)"),
        ((np.ones((1, 2, 1)), np.zeros((2, 1)), np.ones(1), 0.9), "rewards must have shape (S, A) = (1, 2)"),
        ((np.ones((1, 2, 1)), np.zeros((1, 2)), np.ones(2), 0.9), "initial must have shape (S,) = (1,)"),
        ((np.full((2, 1, 2), 0.6), np.zeros((2, 1)), np.ones(2) / 2, 0.9), "transitions[0, 0, :] must sum to 1"),
        ((np.array([[[1.5, -0.5]]] * 2), np.zeros((2, 1)), np.ones(2) / 2, 0.9), "must be non-negative"),
        ((np.ones((1, 1, 1)), np.array([[np.nan]]), np.ones(1), 0.9), "rewards must be finite"),
        ((np.ones((1, 1, 1)), np.zeros((1, 1)), np.array([0.5]), 0.9), "initial must be a probability vector"),
        ((np.ones((1, 1, 1)), np.zeros((1, 1)), np.ones(1), 0.0), "gamma must be in (0, 1]"),
        ((np.ones((1, 1, 1)), np.zeros((1, 1)), np.ones(1), 1.5), "gamma must be in (0, 1]"),
        ((np.ones((1, 2, 1)), np.array([[1.0, 0.2]]), np.ones(1), 1.0), "gamma = 1 needs every policy to terminate"),
    ],
)
def test_invalid_mdps_are_one_clear_line(args, message):
    with pytest.raises(PolicygradError) as err:
        TabularMDP(*args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_gamma_one_allows_policies_that_may_loop_but_always_can_terminate():
    # Corridor: a deterministic policy loops forever, but every softmax policy terminates.
    assert math.isfinite(short_corridor().objective(np.array([[3.0, -3.0]])))
    # A state that cannot reach the terminal, even though another state can, is refused.
    P = np.zeros((3, 1, 3))
    P[0, 0, 2] = P[1, 0, 1] = P[2, 0, 2] = 1.0
    with pytest.raises(PolicygradError, match=r"state\(s\) 1"):
        TabularMDP(P, np.array([[1.0], [1.0], [0.0]]), np.array([1.0, 0, 0]), 1.0)


def test_bad_theta_and_constructor_arguments():
    with pytest.raises(PolicygradError, match=r"theta must have shape \(O, A\) = \(1, 2\)"):
        short_corridor().gradient(np.zeros((4, 2)))
    with pytest.raises(PolicygradError, match="bernoulli reward noise"):
        bandit([2.0, 0.5], noise="bernoulli")
    with pytest.raises(PolicygradError, match="slip"):
        chain(slip=1.5)
    with pytest.raises(PolicygradError, match="exactly one S"):
        gridworld(["..G", "..."])


def undiscounted_update(theta):
    """E[Σ_t G_t ∇log π(a_t|s_t)] on the γ = 0.9 gridworld: the policy-gradient theorem with η for d_γ.

    With tabular logits, row s of ∇J = Σ_s d_γ(s) Σ_a ∇π(a|s) Q(s, a) is d_γ(s) h(s); without γ^t
    each visit counts fully, so the row becomes η(s) h(s), η(s) = Σ_t Pr(s_t = s) (γ = 1 visits,
    same dynamics). Returns (update, ∇J, per-state weights η/d_γ).
    """
    mdp = gridworld(gamma=0.9)
    grad = np.asarray(mdp.gradient(theta))
    discounted = np.asarray(mdp.visitation(theta))
    visits = np.asarray(gridworld(gamma=1.0).visitation(theta))
    weights = np.divide(visits, discounted, out=np.zeros_like(visits), where=discounted > 0)
    return weights[:, None] * grad, grad, weights


def test_reinforce_without_discount_weight_is_biased_for_gamma_below_one():
    """The training update drops γ^t (docs/algorithms.md): its direction is not ∇J's when γ < 1.

    Its exact expectation matches the mean of updates sampled through the library's gae and
    policy_gradient_loss; its cosine to ∇J is below 1 and above Kantorovich's bound
    2√(mM)/(m + M) for a positive per-row scaling with weights in [m, M].
    """
    mdp, theta = gridworld(gamma=0.9), np.zeros((12, 4))
    update, grad, weights = undiscounted_update(theta)
    group_means = []
    for episodes in sample_episode_batches(mdp, theta, 20_000, seed=4, chunk=500):
        rollout = episodes_to_rollout(mdp, theta, episodes, critic=None)
        returns_to_go, _ = gae(
            rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, mdp.gamma, 1.0
        )
        logits = torch.zeros(12, 4, dtype=torch.float64, requires_grad=True)
        log_probs = torch.log_softmax(logits, -1)[episodes.states, episodes.actions]
        loss, _ = policy_gradient_loss(log_probs, returns_to_go, rollout.mask)
        (loss_grad,) = torch.autograd.grad(loss, logits)
        group_means.append(-loss_grad * rollout.mask.sum() / episodes.num_episodes)  # mean of Σ_t over episodes
    group_means = torch.stack(group_means).numpy()
    stderr = group_means.std(0, ddof=1) / math.sqrt(len(group_means))
    z = (group_means.mean(0) - update) / np.maximum(stderr, 1e-9)
    assert np.abs(z).max() < 4.5

    cosine = (update * grad).sum() / (np.linalg.norm(update) * np.linalg.norm(grad))
    moving = np.abs(grad).sum(1) > 0  # the goal, pit and terminal rows of ∇J are 0
    low, high = weights[moving].min(), weights[moving].max()
    assert high > low > 1.0  # each state is visited more often than its discounted weight says
    assert 2 * math.sqrt(low * high) / (low + high) < cosine < 0.99
    assert cosine == pytest.approx(0.9278, abs=1e-4)  # the figure in docs/algorithms.md
    assert np.linalg.norm(update) / np.linalg.norm(grad) == pytest.approx(5.418, abs=1e-3)
