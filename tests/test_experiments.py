"""The experiment command: listing, clear errors, the three files, determinism by seed (quick sizes)."""

import json

import pytest

from policygrad.cli import main
from policygrad.experiments import EXPERIMENTS, get_experiment, run_experiment
from policygrad.experiments.common import jsonable

FAST = ["bandit", "gradient-scatter", "stochastic-optimum", "argmax-instability", "large-actions"]
SLOWER = ["returns", "baseline", "estimators"]


def test_list_names_every_experiment(capsys):
    assert main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    assert set(EXPERIMENTS) >= {
        "bandit",
        "returns",
        "gradient-scatter",
        "baseline",
        "stochastic-optimum",
        "argmax-instability",
        "chain",
        "large-actions",
    }
    assert [line.split()[0] for line in out.strip().splitlines()] == list(EXPERIMENTS)


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["experiment"], "name an experiment"),
        (["experiment", "bandits"], "did you mean 'bandit'"),
        (["experiment", "bandit", "--seed", "-1"], "--seed must be >= 0"),
        (["experiment", "bandit", "--actions", "XYZ"], "--actions must be a sequence of the arms"),
        (["experiment", "returns", "--actions", "AB"], "--actions applies to the bandit experiment only"),
    ],
)
def test_bad_input_is_one_clear_line(argv, expected, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_the_command_writes_png_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "bandit"
    assert main(["experiment", "bandit", "--out", str(out), "--seed", "3", "--quick", "--actions", "CCAB"]) == 0
    assert {p.name for p in out.iterdir()} == {"bandit.png", "bandit.json", "bandit.md"}
    assert (out / "bandit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "bandit.json").read_text())
    assert data["experiment"] == "bandit" and data["seed"] == 3
    assert data["numbers"]["fixed_sequence"]["pattern"] == "CCAB"
    assert "bandit.png" in (out / "bandit.md").read_text()


def test_same_seed_same_numbers_other_seed_other_numbers():
    module = get_experiment("bandit")
    first, again, other = (jsonable(module.run(seed=seed, quick=True).numbers) for seed in (1, 1, 2))
    assert first == again
    assert first != other


def _check(name, tmp_path):
    paths, report = run_experiment(name, out=tmp_path, seed=0, quick=True)
    assert all(path.exists() and path.stat().st_size > 0 for path in paths.values())
    data = json.loads(paths["json"].read_text())  # strict JSON: no NaN or Infinity
    assert data["numbers"] and data["timing"]["runtime_seconds"] > 0
    return report.numbers


@pytest.mark.parametrize("name", FAST)
def test_experiment_runs_quick(name, tmp_path):
    numbers = _check(name, tmp_path)
    if name == "gradient-scatter":
        assert numbers["exact_direction"] == pytest.approx([0.7071, -0.7071], abs=1e-4)
        # ½ Φ(0.2/0.5) + ½ Φ(−2) from a normal table; the sampled share of 2,000 estimates within ~5 s.e.
        assert numbers["exact_fraction_pointing_the_wrong_way"]["reinforce"] == pytest.approx(0.3391, abs=1e-4)
        for name, exact_share in numbers["exact_fraction_pointing_the_wrong_way"].items():
            assert numbers["fraction_pointing_the_wrong_way"][name] == pytest.approx(exact_share, abs=0.05)
    if name == "stochastic-optimum":
        assert numbers["short_corridor"]["analytic_p_right"] == pytest.approx(0.5858, abs=1e-4)
        assert numbers["rock_paper_scissors"]["margin_over_deterministic"] == 1.0


@pytest.mark.parametrize("name", SLOWER)
def test_slower_experiment_runs_quick(name, tmp_path):
    _check(name, tmp_path)


def test_chain_compares_algorithms_trained_by_the_library(tmp_path):
    paths, report = run_experiment("chain", out=tmp_path, seed=0, quick=True, algorithms=["reinforce", "a2c"])
    numbers = report.numbers
    assert list(numbers["algorithms"]) == ["reinforce", "a2c"]
    assert numbers["chain_steps"][0]["from"] == "reinforce" and numbers["chain_steps"][0]["to"] == "a2c"
    assert all(v["grad_snr_median"] > 0 for v in numbers["algorithms"].values())  # log_gradient_variance was on
    assert (tmp_path / "runs" / "a2c-seed0" / "metrics.csv").exists()
