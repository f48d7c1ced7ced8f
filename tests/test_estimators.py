"""The library's estimators (gae + policy_gradient_loss on tabular rollouts) against the exact ∇J.

Unbiased estimators: the mean of many single-episode estimates must lie within a few
standard errors of ∇J in every component. The wrong critic's bias must show. The
baseline must lower the variance. ``POLICYGRAD_TEST_SEED`` reruns them with another seed
(they were checked under seeds 0–4).
"""

import functools
import os

import numpy as np
import pytest
import torch

from policygrad.advantages import returns_to_go
from policygrad.errors import PolicygradError
from policygrad.exact import ESTIMATORS, bandit, chain, check_estimator, sample_episodes, short_corridor
from policygrad.exact.estimators import episodes_to_rollout, fit_critic, get_estimator, per_episode_gradients
from policygrad.losses import value_loss

SEED = int(os.environ.get("POLICYGRAD_TEST_SEED", "0"))
#: Largest |z| allowed for an unbiased estimator: P(|N(0,1)| > 4.5) ≈ 7e-6 per component.
Z_LIMIT = 4.5

CASES = {
    "chain": (
        chain(length=4, slip=0.2, gamma=0.9),
        np.array([[-0.3, 0.6], [0.2, 0.4], [-0.5, 0.9], [0.1, -0.2], [0, 0]]),
        12_000,
    ),
    "corridor": (short_corridor(), np.array([[0.0, -0.4]]), 12_000),
    "bandit": (bandit([1.0, 0.4, 0.7], noise="gaussian", std=0.5), np.array([[0.2, -0.1, 0.4]]), 12_000),
}


@functools.cache
def check(case, estimator):
    mdp, theta, n = CASES[case]
    return check_estimator(mdp, theta, estimator, num_episodes=n, seed=SEED, max_steps=400)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("estimator", [name for name, e in ESTIMATORS.items() if e.unbiased])
def test_unbiased_estimators_average_to_the_exact_gradient(case, estimator):
    result = check(case, estimator)
    assert result.max_abs_z < Z_LIMIT, (case, estimator, result.z)
    # The test has power: the standard error is small next to the gradient itself.
    assert np.linalg.norm(result.std_error) < 0.25 * np.linalg.norm(result.exact)


@pytest.mark.parametrize("case", ["chain", "corridor"])
def test_a_wrong_critic_makes_the_td_estimator_biased(case):
    result = check(case, "td-wrong-critic")
    # V̂ ≡ 0 turns the TD error into the immediate reward: the delayed consequences are lost.
    assert result.max_abs_z > 10 and result.relative_bias > 0.5


def test_on_a_bandit_every_critic_is_a_constant_so_even_the_wrong_one_is_unbiased():
    assert check("bandit", "td-wrong-critic").max_abs_z < Z_LIMIT


@pytest.mark.parametrize("case", list(CASES))
def test_the_state_value_baseline_lowers_the_variance(case):
    plain, baseline = check(case, "reinforce").total_variance, check(case, "exact-baseline").total_variance
    assert baseline < 0.8 * plain, (plain, baseline)


def test_critic_bootstrapping_lowers_the_variance_further_on_the_chain():
    assert check("chain", "td-exact").total_variance < 0.5 * check("chain", "exact-baseline").total_variance


def test_one_episode_estimate_matches_a_hand_written_loop():
    """Independent reference: Σ_t γ^t (G_t − V(s_t)) (e_a − π(·|s_t)) in plain Python."""
    mdp, theta, _ = CASES["chain"]
    episodes = sample_episodes(mdp, theta, 5, seed=SEED)
    values = mdp.values_t(theta)
    grads = per_episode_gradients(theta, episodes_to_rollout(mdp, theta, episodes, values), mdp.gamma, 1.0)
    pi = mdp.policy(theta)
    for n in range(5):
        length = int(episodes.mask[n].sum())
        rewards = episodes.rewards[n, :length].tolist()
        expected = np.zeros_like(theta)
        for t in range(length):
            s, a = int(episodes.states[n, t]), int(episodes.actions[n, t])
            g_t = sum(mdp.gamma**k * r for k, r in enumerate(rewards[t:]))
            score = -pi[s].copy()
            score[a] += 1.0
            expected[s] += mdp.gamma**t * (g_t - values[s].item()) * score
        np.testing.assert_allclose(grads[n].numpy(), expected, atol=1e-10)


def test_returns_of_the_rollout_are_the_library_returns_to_go():
    mdp, theta, _ = CASES["corridor"]
    episodes = sample_episodes(mdp, theta, 3, seed=SEED)
    rollout = episodes_to_rollout(mdp, theta, episodes, critic=None)
    g0 = returns_to_go(rollout.rewards, rollout.terminated, rollout.done, mdp.gamma)[:, 0]
    assert torch.equal(g0, -episodes.lengths.double())  # −1 per step, γ = 1


def test_the_learned_critic_is_the_regression_of_returns_and_approaches_v():
    mdp, theta, _ = CASES["chain"]
    episodes = sample_episodes(mdp, theta, 4_000, seed=SEED)
    fitted = fit_critic(mdp, theta, episodes)
    np.testing.assert_allclose(fitted.numpy(), mdp.values(theta), atol=0.03)
    # It minimises the library's value_loss: nudging any entry makes the loss larger.
    rollout = episodes_to_rollout(mdp, theta, episodes, critic=None)
    returns = returns_to_go(rollout.rewards, rollout.terminated, rollout.done, mdp.gamma)

    def loss(table):
        return value_loss(table[episodes.states], returns, rollout.mask)[0].item()

    for s in range(mdp.num_states - 1):
        for delta in (-1e-3, 1e-3):
            nudged = fitted.clone()
            nudged[s] += delta
            assert loss(nudged) > loss(fitted)


def test_unknown_estimator_is_a_clear_error():
    with pytest.raises(PolicygradError, match="did you mean 'reinforce'"):
        get_estimator("reinforc")
