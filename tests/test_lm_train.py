"""`policygrad lm` end to end: pretrain, train, exact resume, sample, clear errors, and learning."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from policygrad.cli import main
from policygrad.lm.tasks import target_optimum

FAST = ["--set", "max_train_seconds=none", "--set", "eval_prompts=64", "--quiet"]
TIME_COLUMNS = {"wall_time", "tokens_per_second"}


def rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in csv.DictReader(handle)]


@pytest.mark.parametrize("algo", ["rloo", "ppo"])
def test_resume_is_exact(tmp_path, sum_reference, algo, monkeypatch):
    """A run interrupted after its checkpoint at update 3 and resumed equals an uninterrupted one, bit for bit."""
    from policygrad.lm.trainer import LMTrainer

    common = ["lm", "train", algo, "sum", "--ref", str(sum_reference), "--set", "prompts_per_update=8", *FAST]
    common += ["--updates", "6", "--set", "checkpoint_every=3"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main([*common, "--out", str(straight)]) == 0
    original = LMTrainer._one_update

    def interrupted(self):
        if self.update == 4:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(LMTrainer, "_one_update", interrupted)
    assert main([*common, "--out", str(split)]) == 130  # interrupted after update 4, checkpoint at 3
    monkeypatch.setattr(LMTrainer, "_one_update", original)
    assert main(["lm", "resume", str(split), "--quiet"]) == 0
    assert rows(straight) == rows(split) and len(rows(straight)) == 6
    a = load_file(str(straight / "policy" / "model.safetensors"))
    b = load_file(str(split / "policy" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((split / "summary.json").read_text())
    for key in ("final_reward_mean", "kl_mean", "train_seconds", "tokens_per_second", "final_success_rate"):
        assert isinstance(summary[key], float), key
    assert (straight / "tensorboard").is_dir() and (straight / "reference" / "model.safetensors").is_file()


def test_sample_prints_responses(tmp_path, sum_reference, capsys):
    run = tmp_path / "run"
    assert (
        main(["lm", "train", "grpo", "sum", "--ref", str(sum_reference), "--out", str(run), "--updates", "2", *FAST])
        == 0
    )
    capsys.readouterr()
    assert main(["lm", "sample", str(run), "-n", "3", "--json"]) == 0
    samples = json.loads(capsys.readouterr().out)
    assert len(samples) == 3 and all(s["prompt"].startswith("<bos>") for s in samples)
    assert main(["lm", "sample", str(sum_reference), "-n", "2"]) == 0
    assert "→" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["lm", "train", "rlo", "sum"], "did you mean 'rloo'"),
        (["lm", "train", "rloo", "summ"], "did you mean 'sum'"),
        (["lm", "train", "rloo", "sum", "--ref", "/nonexistent"], "is not a folder"),
        (["lm", "train", "rloo", "sum", "--kl-coef", "-1"], "invalid kl_coef"),
        (["lm", "train", "rloo", "sum", "--set", "loss_reduction=mean"], "invalid loss_reduction"),
        (["lm", "resume", "/nonexistent"], "does not exist"),
        (["lm", "sample", "/nonexistent"], "does not exist"),
        (["lm", "pretrain", "sort", "--vocab-size", "8"], "invalid vocab_size"),
    ],
)
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_existing_run_folder_and_task_mismatch(tmp_path, sum_reference, capsys):
    run = tmp_path / "run"
    assert (
        main(["lm", "train", "rloo", "sum", "--ref", str(sum_reference), "--out", str(run), "--updates", "1", *FAST])
        == 0
    )
    assert main(["lm", "train", "rloo", "sum", "--ref", str(sum_reference), "--out", str(run), *FAST]) == 1
    assert "policygrad lm resume" in capsys.readouterr().err
    assert (
        main(["lm", "train", "rloo", "target", "--ref", str(sum_reference), "--out", str(tmp_path / "t"), *FAST]) == 1
    )
    assert "pretrained on 'sum', not 'target'" in capsys.readouterr().err


def test_command_line_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "policygrad.cli", "lm", "train", "ppo", "sum", "--ref", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr and "not a model folder" in result.stderr


@pytest.mark.slow
def test_reinforce_learns_target_and_rloo_reaches_the_kl_regularised_optimum(tmp_path):
    """REINFORCE takes `target` from ≈ 0.19 to ≥ 0.75; with β = 0.1, RLOO's reward and KL match the closed form.

    The target reference writes independent digits (the target one with probability
    q ≈ 0.19), so π* ∝ π_ref·e^{r/β} puts p* = q e^c / (q e^c + 1 − q), c = 1/(Lβ), on the
    target digit at every position: p* ≈ 0.45 and KL(π*‖π_ref) ≈ 1.40 for β = 0.1.
    """
    ref = tmp_path / "ref"
    assert main(["lm", "pretrain", "target", "--out", str(ref), "--steps", "300", "--quiet"]) == 0
    run = tmp_path / "reinforce"
    assert (
        main(["lm", "train", "reinforce", "target", "--ref", str(ref), "--out", str(run), "--updates", "200", *FAST])
        == 0
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reference_reward_mean"] < 0.25
    assert summary["final_reward_mean"] >= 0.75, summary

    beta = 0.1
    run = tmp_path / "optimum"
    args = ["--ref", str(ref), "--out", str(run), "--kl-coef", str(beta), "--updates", "300"]
    settings = ["--set", "max_train_seconds=none", "--set", "eval_prompts=2048", "--set", "prompts_per_update=16"]
    assert main(["lm", "train", "rloo", "target", *args, *settings, "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    optimum = target_optimum(summary["reference_reward_mean"], beta)
    assert summary["final_reward_mean"] == pytest.approx(optimum["reward"], abs=0.04), (summary, optimum)
    assert summary["kl_mean"] == pytest.approx(optimum["kl"], abs=0.3), (summary, optimum)
