"""policygrad sweep --backend ray: a Ray sweep killed with SIGKILL and resumed gives a local sweep's runs, bit for bit.

The sweep starts its own private local Ray, as a user's command does. Skipped when
Ray is not installed (pip install 'policygrad[ray]').
"""

import pytest
import ray_helpers  # noqa: F401 - sets Ray's environment variables before Ray is imported
from ray_helpers import assert_same_run
from sweep_helpers import kill_sweep_midway

import policygrad
from policygrad.cli import main

pytest.importorskip("ray")
pytest.importorskip("rliable")
pytestmark = pytest.mark.timeout(300)  # a misconfigured Ray fails, never hangs

ARGS = ["a2c", "CartPole-v1", "--seeds", "0-1", "--steps", "8000", "--workers", "2", "--quiet"]
ARGS += ["--set", "learning_rate=1e-2,3e-3", "--set", "checkpoint_every=2", "--set", "eval_every=2048"]
RUNS = [f"learning_rate={lr}/seed{seed}" for lr in ("1e-2", "3e-3") for seed in (0, 1)]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "sweep"
    assert main(["sweep", *ARGS, "--out", str(out)]) == 0
    return out


def assert_same_sweep(a, b):
    for run in RUNS:
        assert_same_run(a / run, b / run)
    reports = [policygrad.report(root, reps=500) for root in (a, b)]
    assert [(s["name"], s["iqm"]) for s in reports[0]["settings"]] == [
        (s["name"], s["iqm"]) for s in reports[1]["settings"]
    ]


@pytest.mark.slow
def test_a_ray_sweep_killed_with_sigkill_resumes_on_ray_to_the_runs_of_a_local_sweep(tmp_path, local_sweep):
    killed = tmp_path / "killed"
    kill_sweep_midway([*ARGS, "--backend", "ray"], killed, RUNS, timeout=180)
    interrupted = [
        r for r in RUNS if (killed / r / "checkpoints").is_dir() and not (killed / r / "summary.json").exists()
    ]
    unstarted = [r for r in RUNS if not (killed / r).exists()]
    assert interrupted and unstarted, "the sweep was not killed midway"

    # The killed sweep's Ray tasks end with it; --resume (which waits up to 10 s for a run folder's lock)
    # resumes the interrupted runs and trains the unstarted ones from scratch, all as Ray tasks.
    assert main(["sweep", "--resume", str(killed), "--backend", "ray", "--workers", "2", "--quiet"]) == 0
    assert_same_sweep(local_sweep, killed)


def test_ray_sweep_options_are_checked_in_one_line(tmp_path, capsys):
    unreachable = ["--backend", "ray", "--ray-address", "127.0.0.1:1", "--out", str(tmp_path / "u")]
    for argv in (
        ["sweep", "a2c", "CartPole-v1", "--ray-address", "auto", "--out", str(tmp_path / "s")],
        ["sweep", "a2c", "CartPole-v1", "--backend", "ray", "--workers", "0", "--out", str(tmp_path / "s")],
        ["sweep", "--resume", str(tmp_path / "s"), "--out", str(tmp_path / "t")],
        ["sweep", "a2c", "CartPole-v1", *unreachable],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("policygrad: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()
    assert not (tmp_path / "u" / "sweep.json").exists()  # a cluster out of reach leaves no sweep to resume
