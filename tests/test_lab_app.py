"""Every interaction of every lab page, run headless with Streamlit's own ``AppTest`` (no browser, no server).

The checks are the theory's: a positive reward raises the pulled arm's probability, sampled returns
centre on the exact value, the running average of gradient estimates points along ∇J, the baseline
cuts the variance, and each step of the chain shows its own module's source.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit", reason="the lab extra is not installed: pip install 'policygrad[lab]'")
from streamlit.testing.v1 import AppTest  # noqa: E402

import policygrad.lab  # noqa: E402
from policygrad.lab import PAGES  # noqa: E402
from policygrad.lab.bandit import ARMS  # noqa: E402

APP = Path(policygrad.lab.__file__).with_name("app.py")
TIMEOUT = 60  # seconds per script run; the machine may be shared and slow

pytestmark = pytest.mark.timeout(240)


def _page(slug: str) -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()
    if slug != "bandit":
        app.switch_page(f"views/{slug}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _no_traceback(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]


def _metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_every_page_of_the_navigation_opens_under_its_title() -> None:
    app = _page("bandit")
    assert app.title[0].value == PAGES[0].title == "Bandit"  # the first page is the app's address
    for page in PAGES[1:]:
        app.switch_page(f"views/{page.slug}.py").run()
        _no_traceback(app)
        assert app.title[0].value == page.title


def test_bandit_click_moves_the_pulled_arm_with_the_sign_of_its_reward() -> None:
    app = _page("bandit")
    lab = app.session_state["lab.bandit"]
    np.testing.assert_allclose(lab.probabilities, 0.25)
    seen = set()
    for i in range(12):
        arm = i % 4
        before = lab.probabilities[arm]
        app.button(key=f"pull_{ARMS[arm]}").click().run()
        _no_traceback(app)
        lab = app.session_state["lab.bandit"]
        pull = lab.history[-1]
        assert pull.arm == arm and pull.chosen_by == "you"
        after = lab.probabilities[arm]
        assert np.sign(after - before) == np.sign(pull.reward)
        seen.add(np.sign(pull.reward))
        assert any(f"You pulled **{ARMS[arm]}**" in info.value for info in app.info)
        assert app.subheader[-1].value == f"Reward history ({i + 1} pulls)"
    assert seen == {1.0, -1.0}


def test_bandit_policy_sampling_learning_rate_reveal_and_reset() -> None:
    app = _page("bandit")
    app.number_input(key="bandit_steps").set_value(300).run()
    app.button(key="bandit_sample").click().run()
    _no_traceback(app)
    lab = app.session_state["lab.bandit"]
    assert len(lab.history) == 300 and {p.chosen_by for p in lab.history} == {"policy"}
    assert lab.probabilities[2] > 0.5  # C, the best arm, has taken over
    assert any("The policy pulled 300 times" in info.value for info in app.info)

    assert not any("Hidden means" in md.value for md in app.markdown)
    app.toggle(key="bandit_reveal").set_value(True).run()
    assert any("Hidden means" in md.value and "C = +1.0" in md.value for md in app.markdown)

    fast = app.session_state["lab.bandit"]
    app.number_input(key="bandit_lr").set_value(1.0).run()
    assert fast.learning_rate == 1.0
    app.button(key="bandit_reset").click().run()
    lab = app.session_state["lab.bandit"]
    assert lab.history == [] and np.allclose(lab.probabilities, 0.25)


@pytest.mark.parametrize("rate", [0.0, -0.5])
def test_bandit_bad_learning_rate_is_an_error_on_the_page(rate: float) -> None:
    app = _page("bandit")
    app.number_input(key="bandit_lr").set_value(rate).run()
    _no_traceback(app)
    assert [e.value for e in app.error] == [f"learning rate must be greater than 0 (got {rate:g}); try 0.1"]
    assert all(app.button(key=f"pull_{name}").disabled for name in ARMS)
    assert app.button(key="bandit_sample").disabled


def test_bandit_absurd_sample_count_is_an_error_on_the_page() -> None:
    app = _page("bandit")
    app.number_input(key="bandit_steps").set_value(1_000_000).run()
    app.button(key="bandit_sample").click().run()
    _no_traceback(app)
    assert any("number of steps must be between 1 and 5,000" in e.value for e in app.error)
    assert app.session_state["lab.bandit"].history == []


def test_sampler_trajectory_histogram_and_reset() -> None:
    app = _page("sampler")
    assert _metric(app, "episodes") == "0"
    exact = app.session_state["lab.sampler"].exact_value
    assert _metric(app, "exact V(s₀)") == f"{exact:+.3f}"
    app.button(key="sampler_one").click().run()
    _no_traceback(app)
    lab = app.session_state["lab.sampler"]
    assert len(lab.returns) == 1 and lab.last_episode
    assert lab.returns[0] == pytest.approx(lab.last_episode[0].return_to_go)
    assert app.dataframe[0].value["return G_t"].iloc[0] == pytest.approx(lab.returns[0])
    for _ in range(3):
        app.button(key="sampler_100").click().run()
    stats = app.session_state["lab.sampler"].statistics()
    assert stats["episodes"] == 301 and _metric(app, "episodes") == "301"
    assert abs(stats["mean"] - exact) < 4 * stats["std_error"]  # the histogram centres on V(s₀) …
    assert stats["std"] > 10 * stats["std_error"]  # … but a single return is spread wide
    app.button(key="sampler_reset").click().run()
    assert _metric(app, "episodes") == "0" and app.session_state["lab.sampler"].returns == []


def test_scatter_samples_statistics_and_reset() -> None:
    app = _page("scatter")
    assert _metric(app, "true direction") == "(+0.71, -0.71)"
    assert _metric(app, "samples") == "0" and _metric(app, "average direction") == "–"
    app.button(key="scatter_one").click().run()
    _no_traceback(app)
    assert _metric(app, "samples") == "1"
    for _ in range(5):
        app.button(key="scatter_ten").click().run()
    lab = app.session_state["lab.scatter"]
    assert len(lab.samples) == 51 and _metric(app, "samples") == "51"
    np.testing.assert_allclose(lab.samples.sum(1), 0.0, atol=1e-12)
    assert _metric(app, "average direction") == "(+0.71, -0.71)"  # the average found ∇J's direction
    assert _metric(app, "angle to ∇J") == "0.0°"
    app.button(key="scatter_reset").click().run()
    assert _metric(app, "samples") == "0"


def test_baseline_simulation_shows_lower_variance_with_the_baseline() -> None:
    app = _page("baseline")
    assert "lab.baseline" not in app.session_state
    app.number_input(key="baseline_seeds").set_value(0).run()
    app.button(key="baseline_run").click().run()
    _no_traceback(app)
    assert any("number of seeds must be between 1 and 20" in e.value for e in app.error)
    app.number_input(key="baseline_seeds").set_value(3).run()
    app.number_input(key="baseline_pulls").set_value(100).run()
    app.button(key="baseline_run").click().run()
    _no_traceback(app)
    result = app.session_state["lab.baseline"]
    assert result.curves["no baseline"].shape == result.curves["with baseline"].shape == (3, 101)
    assert result.variance_at_start["with baseline"] < result.variance_at_start["no baseline"]
    assert any("divides the variance" in s.value for s in app.success)


def test_evolution_each_node_shows_what_it_adds_its_equation_and_source() -> None:
    from policygrad.algorithms import ADDS, ALGORITHMS

    app = _page("evolution")
    assert app.header[0].value == "REINFORCE"
    for name, title in (
        ("reinforce-baseline", "+ baseline"),
        ("actor-critic", "Actor-Critic"),
        ("a2c", "A2C"),
        ("ppo", "PPO"),
        ("reinforce", "REINFORCE"),
    ):
        app.segmented_control(key="evolution_algo").set_value(name).run()
        _no_traceback(app)
        assert app.header[0].value == title
        assert any(ADDS[name] in md.value for md in app.markdown)
        assert app.latex and app.code[0].value.startswith('"""')
        assert app.code[0].value == Path(ALGORITHMS[name].__file__).read_text().rstrip("\n")
        assert any(f"Source: {ALGORITHMS[name].__name__}" == s.value for s in app.subheader)
        assert any("core of RLHF" in md.value for md in app.markdown) == (name == "ppo")


def test_evolution_trains_live_and_stops() -> None:
    app = _page("evolution")
    # The slowest step of the chain: A2C and PPO can finish 400,000 CartPole steps before Stop lands.
    app.segmented_control(key="evolution_algo").set_value("actor-critic").run()
    app.number_input(key="evolution_steps").set_value(100).run()
    app.button(key="evolution_train").click().run()
    assert any("training steps must be between 1,000 and 500,000" in e.value for e in app.error)
    app.number_input(key="evolution_steps").set_value(400_000).run()
    app.button(key="evolution_train").click().run()
    _no_traceback(app)
    job = app.session_state["lab.training"]
    assert job.algo == "actor-critic" and app.button(key="evolution_train").disabled
    deadline = time.monotonic() + 120
    while len(job.poll()["rows"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    app.run()
    assert app.progress and "of 400,000 steps" in app.progress[0].proto.text
    rows_before = len(job.poll()["rows"])
    app.button(key="evolution_stop").click().run()
    deadline = time.monotonic() + 60
    while job.running and time.monotonic() < deadline:
        time.sleep(0.3)
        job.poll()
    app.run()
    assert job.status == "stopped" and len(job.rows) >= rows_before
    assert any("Actor-Critic stopped after" in s.value for s in app.success)
    assert not app.button(key="evolution_train").disabled
