"""Every bad input gives one clear line and a non-zero exit, never a traceback."""

import json
import subprocess
import sys

import pytest

from policygrad.cli import main


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["train", "ppo", "CartPol-v1"], "did you mean 'CartPole-v1'"),
        (["train", "ppx", "CartPole-v1"], "did you mean 'ppo'"),
        (["train", "ppo", "policygrad-test/DictAction-v0", "--out", "{tmp}/md"], "has action space Dict"),
        (["train", "ppo", "CartPole-v1", "--set", "learning_rate=-1"], "invalid learning_rate = -1.0"),
        (["train", "a2c", "CartPole-v1", "--set", "gamma=1.5"], "invalid gamma = 1.5: allowed (0, 1]"),
        (["train", "ppo", "CartPole-v1", "--set", "minibatch_size=300"], "must divide the batch"),
        (["train", "ppo", "CartPole-v1", "--set", "learnin_rate=0.1"], "did you mean 'learning_rate'"),
        (["train", "ppo", "CartPole-v1", "--set", "learning_rate"], "--set expects key=value"),
        (["train", "ppo", "CartPole-v1", "--set", "num_envs=many"], "is not an integer"),
        (["eval", "{tmp}/nowhere"], "does not exist"),
        (["resume", "{tmp}/nowhere"], "does not exist"),
        (["eval", "{tmp}", "--episodes", "0"], "--episodes must be positive"),
    ],
)
def test_bad_input_is_one_clear_line(argv, expected, capsys, tmp_path):
    code, out, err = run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code != 0
    assert expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_flag_is_one_line_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "ppo", "CartPole-v1", "--stepz", "5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --stepz" in err and len(err.strip().splitlines()) == 1


def test_corrupt_checkpoint_and_config_are_clear_errors(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "reinforce",
                "CartPole-v1",
                "--steps",
                "300",
                "--out",
                str(run_dir),
                "--quiet",
                "--set",
                "eval_every=0",
                "--set",
                "eval_episodes=1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    for checkpoint in (run_dir / "checkpoints").glob("update_*"):
        (checkpoint / "model.safetensors").write_bytes(b"garbage")
    code, _, err = run(["eval", str(run_dir)], capsys)
    assert code == 1 and "corrupt" in err and "Traceback" not in err
    (run_dir / "config.json").write_text("{not json")
    code, _, err = run(["resume", str(run_dir)], capsys)
    assert code == 1 and "corrupt" in err and "Traceback" not in err


def test_existing_run_folder_is_not_overwritten(capsys, tmp_path):
    args = [
        "train",
        "reinforce",
        "CartPole-v1",
        "--steps",
        "200",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
        "--set",
        "eval_episodes=1",
    ]
    assert main(args) == 0
    code, _, err = run(args, capsys)
    assert code == 1 and "already holds a run" in err


def test_nan_loss_stops_with_the_update_named_and_keeps_last_checkpoint(capsys, tmp_path):
    code, _, err = run(
        ["train", "a2c", "policygrad-test/NaNReward-v0", "--out", str(tmp_path / "nan"), "--quiet", "--steps", "1000"],
        capsys,
    )
    assert code == 1  # a NaN reward is the environment's fault, named before it becomes a NaN loss
    assert "env 0 returned a non-finite reward (nan) at step 1 of update 1" in err
    assert "the last checkpoint is kept" in err
    assert (tmp_path / "nan" / "checkpoints" / "update_0000000" / "model.safetensors").is_file()
    assert "Traceback" not in err


def test_eval_json_and_list(capsys, tmp_path):
    run_dir = tmp_path / "r"
    settings = "--steps 2048 --quiet --set eval_episodes=2 --num-envs 4 --set rollout_steps=64 --set minibatch_size=64"
    assert main(["train", "ppo", "CartPole-v1", "--out", str(run_dir), *settings.split()]) == 0
    capsys.readouterr()
    code, out, _ = run(["eval", str(run_dir), "--episodes", "3", "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["episodes"] == 3 and len(result["returns"]) == 3
    assert {"mean_return", "std_return"} <= set(result)
    code, out, _ = run(["list"], capsys)
    assert code == 0 and "reinforce-baseline" in out and "preset CartPole-v1" in out and "clip_coef" in out


def test_console_script_is_installed_and_errors_cleanly():
    proc = subprocess.run(
        [sys.executable, "-m", "policygrad.cli", "train", "ppo", "CartPol-v1"], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "CartPole-v1" in proc.stderr and "Traceback" not in proc.stderr
