"""The lab's page models, without a browser: each claim a page makes, checked against an independent reference."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from policygrad.errors import PolicygradError
from policygrad.lab import inputs
from policygrad.lab.bandit import BanditLab
from policygrad.lab.baseline import example_advantages, simulate
from policygrad.lab.evolution import CHAIN, EDGE_LABELS, NOTES, edges, step
from policygrad.lab.sampler import GAMMA, RETURN_RANGE, SamplerLab, cell_names
from policygrad.lab.scatter import ScatterLab


def test_bandit_pull_is_the_softmax_policy_gradient_step() -> None:
    """θ' − θ = α R (e_a − π), the hand-derived ∇log π(a)·R of a softmax."""
    lab = BanditLab(learning_rate=0.3, seed=1)
    for arm in (0, 1, 2, 3, 2, 2, 0):
        theta, pi = lab.theta.copy(), lab.probabilities.copy()
        pull = lab.pull(arm)
        expected = 0.3 * pull.reward * (np.eye(4)[arm] - pi)
        np.testing.assert_allclose(lab.theta - theta, expected[None, :], atol=1e-12)


def test_bandit_positive_reward_raises_negative_lowers() -> None:
    lab = BanditLab(seed=3)
    signs = set()
    for i in range(80):
        arm = i % 4
        before = lab.probabilities.copy()
        pull = lab.pull(arm)
        change = pull.probs_after[arm] - before[arm]
        assert np.sign(change) == np.sign(pull.reward), (arm, pull.reward, change)
        signs.add(np.sign(pull.reward))
    assert signs == {-1.0, 1.0}  # both cases happened


def test_bandit_policy_sampling_learns_the_best_arm_and_reset_restores() -> None:
    lab = BanditLab(seed=0)
    pulls = lab.sample(400)
    assert len(pulls) == len(lab.history) == 400 and all(p.chosen_by == "policy" for p in pulls)
    assert lab.probabilities[int(np.argmax(lab.means))] > 0.8
    assert lab.counts().sum() == 400
    lab.reset()
    np.testing.assert_allclose(lab.probabilities, 0.25)
    assert lab.history == []
    assert BanditLab(seed=0).sample(5) == BanditLab(seed=0).sample(5)  # same seed, same pulls


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), 1e6])
def test_bad_learning_rates_are_refused_with_one_line(bad: float) -> None:
    lab = BanditLab()
    with pytest.raises(PolicygradError, match="learning rate") as info:
        lab.set_learning_rate(bad)
    assert "\n" not in str(info.value)
    assert lab.learning_rate == 0.1  # unchanged


@pytest.mark.parametrize("bad", [0, -5, 2.5, 10**9])
def test_absurd_counts_are_refused(bad: float) -> None:
    with pytest.raises(PolicygradError, match="number of steps"):
        BanditLab().sample(bad)
    with pytest.raises(PolicygradError, match="number of episodes"):
        SamplerLab().sample(bad)
    with pytest.raises(PolicygradError, match="number of samples"):
        ScatterLab().sample(bad)
    assert inputs.count(7.0, "x", 10) == 7


def test_sampler_returns_follow_the_recursion_and_centre_on_the_exact_value() -> None:
    lab = SamplerLab(seed=0)
    steps = lab.sample(1)
    assert steps[0].state == "(1, 1) start"
    assert steps[-1].state.endswith(("+1", "−1")) and steps[-1].reward in (1.0, -1.0)  # episodes end at an exit
    for now, after in zip(steps[:-1], steps[1:], strict=True):
        assert now.return_to_go == pytest.approx(now.reward + GAMMA * after.return_to_go)  # Gₜ = rₜ + γ Gₜ₊₁
    assert steps[-1].return_to_go == pytest.approx(steps[-1].reward)
    assert lab.returns == [pytest.approx(steps[0].return_to_go)]
    lab.sample(3_000)
    stats = lab.statistics()
    assert stats["episodes"] == 3_001
    assert abs(stats["mean"] - stats["exact"]) < 4 * stats["std_error"]  # unbiased
    assert stats["std"] > 0.1  # but one return is a noisy estimate
    assert RETURN_RANGE[0] <= min(lab.returns) and max(lab.returns) <= RETURN_RANGE[1]
    lab.reset()
    assert lab.statistics()["episodes"] == 0


def test_sampler_cell_names_follow_the_gridworld_order() -> None:
    names = cell_names()
    assert len(names) == SamplerLab().mdp.num_states == 12
    assert names[3] == "(4, 3) +1" and names[6] == "(4, 2) −1" and names[7] == "(1, 1) start" and names[-1] == "end"


def test_scatter_estimates_lie_on_a_line_and_average_to_the_exact_gradient() -> None:
    lab = ScatterLab(seed=0)
    stats = lab.statistics()
    np.testing.assert_allclose(stats["true_direction"], [np.sqrt(0.5), -np.sqrt(0.5)])
    assert stats["samples"] == 0 and stats["direction"] is None
    lab.sample(1)
    lab.sample(2_000)
    assert len(lab.samples) == 2_001
    np.testing.assert_allclose(lab.samples.sum(1), 0.0, atol=1e-12)  # ĝ₁ + ĝ₂ = 0
    std_error = lab.samples.std(0, ddof=1) / np.sqrt(len(lab.samples))
    assert np.all(np.abs(lab.mean - lab.exact) < 4 * std_error)
    assert lab.statistics()["angle_degrees"] == pytest.approx(0.0, abs=1e-6)
    assert 0.2 < lab.wrong_way_fraction() < 0.5
    lab.reset()
    assert len(lab.samples) == 0


def test_baseline_example_and_simulation() -> None:
    example = example_advantages()
    np.testing.assert_allclose(example["raw"], [8, 6, 3])
    np.testing.assert_allclose(example["with_baseline"], [8 - 17 / 3, 6 - 17 / 3, 3 - 17 / 3])
    progress: list[float] = []
    result = simulate(3, 60, on_progress=lambda fraction, text: progress.append(fraction))
    assert progress[0] == 0 and progress[-1] == 1.0 and progress == sorted(progress)
    for label in ("no baseline", "with baseline"):
        assert result.curves[label].shape == (3, 61)
        np.testing.assert_allclose(result.curves[label][:, 0], np.mean([8, 6, 3]))  # θ = 0: uniform
    assert result.variance_at_start["with baseline"] < result.variance_at_start["no baseline"] / 3
    assert result.squared_error["with baseline"] < result.squared_error["no baseline"]
    with pytest.raises(PolicygradError, match="number of seeds"):
        simulate(0, 10)


def test_evolution_chain_matches_the_algorithms() -> None:
    assert CHAIN == ("reinforce", "reinforce-baseline", "actor-critic", "a2c", "ppo")
    assert [label for _, _, label in edges()] == [
        "+ baseline b(s)",
        "+ critic network",
        "+ parallel sampling",
        "+ clipped trust region",
    ]
    assert set(EDGE_LABELS) == set(CHAIN[1:]) and NOTES == {"ppo": "core of RLHF"}
    from policygrad.algorithms import ALGORITHMS

    for name in CHAIN:
        node = step(name)
        with open(inspect.getsourcefile(ALGORITHMS[name])) as source:  # type: ignore[arg-type]
            assert node.source == source.read()
        assert node.adds and node.equation and node.module == ALGORITHMS[name].__name__
