"""The run folder under faults: one writer at a time, stale temporaries, stop decisions, damaged checkpoints."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from policygrad.errors import PolicygradError
from policygrad.runs import lock_run_dir


def cli(*args):
    return [sys.executable, "-m", "policygrad.cli", *args]


QUIET = ["--quiet", "--set", "eval_episodes=1", "--set", "eval_every=0"]


def wait_for(path, proc, seconds=120):
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, "training ended before the test could reach it"
        assert time.time() < deadline
        time.sleep(0.05)


def test_one_writer_per_run_folder_and_readers_do_not_wait(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(cli("train", "a2c", "CartPole-v1", "--steps", "10000000", "--out", str(run_dir), *QUIET))
    try:
        wait_for(run_dir / "checkpoints" / "latest", first)
        for command in (
            cli("train", "a2c", "CartPole-v1", "--steps", "1000", "--out", str(run_dir), *QUIET),
            cli("resume", str(run_dir), "--quiet"),
        ):
            proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 1
            assert proc.stderr.count("\n") == 1 and str(run_dir) in proc.stderr and f"PID {first.pid}" in proc.stderr
        evaluation = subprocess.run(cli("eval", str(run_dir), "--episodes", "1"), capture_output=True, text=True)
        assert evaluation.returncode == 0, evaluation.stderr
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    lock = lock_run_dir(run_dir)  # a killed writer's lock died with it
    lock.release()


def test_the_lock_is_exclusive_within_a_process_too(tmp_path):
    lock = lock_run_dir(tmp_path / "run")
    with pytest.raises(PolicygradError, match=f"PID {os.getpid()}"):
        lock_run_dir(tmp_path / "run")
    lock.release()
    lock_run_dir(tmp_path / "run").release()


def test_temporaries_of_a_killed_writer_are_removed_by_the_next(tmp_path):
    run_dir = tmp_path / "run"
    subprocess.run(cli("train", "a2c", "CartPole-v1", "--steps", "200", "--out", str(run_dir), *QUIET), check=True)
    stale = [run_dir / "checkpoints" / ".tmp_update_0000007_x1", run_dir / ".metrics.csv.abc", run_dir / ".lock"]
    stale[0].mkdir()
    (stale[0] / "model.safetensors").write_bytes(b"half")
    stale[1].write_text("half")
    subprocess.run(cli("resume", str(run_dir), "--steps", "400", "--quiet"), check=True)
    assert not stale[0].exists() and not stale[1].exists()


def test_out_naming_a_file_is_one_line(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    proc = subprocess.run(
        cli("train", "a2c", "CartPole-v1", "--out", str(target), *QUIET), capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "is a file" in proc.stderr


def rows(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return [line.split(",")[0] for line in handle][1:]


def test_a_finished_run_stays_finished_and_a_summary_lost_to_a_kill_is_written(tmp_path):
    """Killed between the final checkpoint and summary.json, resume trains nothing: the same rows."""
    run_dir = tmp_path / "run"
    target = ["--target-return", "9", "--set", "eval_every=100", "--set", "eval_episodes=1", "--quiet"]
    subprocess.run(cli("train", "a2c", "CartPole-v1", "--steps", "4000", "--out", str(run_dir), *target), check=True)
    before = rows(run_dir)
    (run_dir / "summary.json").unlink()  # what a kill after the final checkpoint leaves
    for _ in range(2):
        proc = subprocess.run(cli("resume", str(run_dir), "--quiet"), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"finished (target reached at update {before[-1]})" in proc.stderr
        assert rows(run_dir) == before and (run_dir / "summary.json").exists()
    subprocess.run(cli("resume", str(run_dir), "--steps", "6000", "--quiet"), check=True)
    after = rows(run_dir)
    assert after[: len(before)] == before and len(after) > len(before)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_checkpoint_then_name_the_resume_command(tmp_path, signum):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        cli("train", "a2c", "CartPole-v1", "--steps", "10000000", "--out", str(run_dir), *QUIET),
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(run_dir / "checkpoints" / "latest", proc)
    time.sleep(1.0)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    assert f"policygrad resume {run_dir}" in stderr and stderr.count("\n") == 1
    saved = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert int(saved.split("_")[1]) == int(rows(run_dir)[-1]) > 0  # every row written is checkpointed


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.safetensors", "state.json"])
def test_a_damaged_newest_checkpoint_is_named_and_never_silently_skipped(tmp_path, damaged):
    run_dir = tmp_path / "run"
    settings = [
        "--steps",
        "3000",
        "--num-envs",
        "4",
        "--set",
        "rollout_steps=5",
        "--set",
        "checkpoint_every=20",
        *QUIET,
    ]
    subprocess.run(cli("train", "a2c", "CartPole-v1", "--out", str(run_dir), *settings), check=True)
    before = rows(run_dir)
    newest = sorted((run_dir / "checkpoints").glob("update_*"))[-1]
    older = sorted((run_dir / "checkpoints").glob("update_*"))[-2]
    path = newest / damaged
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated, as a full disk leaves it
    for command in (cli("resume", str(run_dir), "--quiet"), cli("eval", str(run_dir), "--episodes", "1")):
        proc = subprocess.run(command, capture_output=True, text=True)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert newest.name in proc.stderr and f"--from-checkpoint {int(older.name[7:])}" in proc.stderr
        assert rows(run_dir) == before  # nothing truncated
    n = int(older.name[7:])
    evaluation = subprocess.run(cli("eval", str(run_dir), "--from-checkpoint", str(n)), capture_output=True, text=True)
    assert f"at update {n} " in evaluation.stdout
    subprocess.run(cli("resume", str(run_dir), "--quiet", "--from-checkpoint", str(n)), check=True)
    after = rows(run_dir)
    assert after[:n] == before[:n] and after[-1] == before[-1]  # the run reached its end again


ASYNC_WRITER = """
import os, sys, gymnasium as gym
from policygrad.runs import lock_run_dir
lock = lock_run_dir(sys.argv[1])
envs = gym.vector.AsyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)  # forks its workers holding the lock
envs.reset(seed=0)
print(*(p.pid for p in envs.processes), flush=True)
for worker in envs.processes:  # alive after the kill below: stuck in a slow step, say
    os.kill(worker.pid, 19)  # SIGSTOP
os.kill(os.getpid(), 9)
"""


def test_forked_env_workers_of_a_killed_writer_do_not_hold_its_lock(tmp_path):
    """A worker forked while the lock is held (async envs on resume) must not keep it after its parent dies."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", ASYNC_WRITER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in proc.stdout.readline().split()]  # not to EOF: the workers share the pipe
    assert proc.wait(timeout=60) == -signal.SIGKILL and len(workers) == 2
    try:
        lock_run_dir(run_dir).release()  # the next writer takes the folder at once
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGKILL)


def test_a_run_killed_before_its_first_checkpoint_is_started_again_by_train(tmp_path, capsys):
    """What a kill during the first checkpoint's write leaves: a config, a header, a temporary folder."""
    from policygrad.cli import main

    run_dir = tmp_path / "run"
    args = ["a2c", "CartPole-v1", "--steps", "200", "--out", str(run_dir), *QUIET]
    assert main(["train", *args]) == 0
    for path in (run_dir / "checkpoints").glob("update_*"):
        shutil.rmtree(path)
    (run_dir / "checkpoints" / "latest").unlink()
    (run_dir / "checkpoints" / ".tmp_update_0000000_x").mkdir()
    (run_dir / "metrics.csv").write_text((run_dir / "metrics.csv").read_text().splitlines()[0] + "\n")
    capsys.readouterr()
    assert main(["resume", str(run_dir), "--quiet"]) == 1
    assert "stopped before the first one; start it again" in capsys.readouterr().err
    assert main(["train", *args]) == 0
    assert len(rows(run_dir)) > 0 and (run_dir / "checkpoints" / "latest").exists()


def test_a_metrics_row_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    from policygrad.run_log import MetricsLog

    log = MetricsLog(tmp_path, tensorboard=False)
    for update in range(1, 46):
        log.write({"update": update, "env_step": 10 * update})
    log.close()
    with open(tmp_path / "metrics.csv", "a") as handle:
        handle.write("4")  # the first digit of update 46's row, and then the kill
    kept = MetricsLog.truncate(tmp_path, 44)
    assert [int(row["update"]) for row in kept] == list(range(1, 45))
