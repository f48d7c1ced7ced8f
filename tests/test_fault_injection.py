"""kill -9 at 20 seeded random instants of one run, inside checkpoint writes too: it ends as the uninterrupted run.

One uninterrupted reference run, then one run killed 20 times: at random moments of
training (an update, an evaluation, a checkpoint write, logging), at random moments of a
resume's start (loading, truncating metrics.csv), and paused inside a checkpoint write by
the test hook ``POLICYGRAD_TEST_PAUSE_IN_CHECKPOINT`` (at each stage of the write, and after
the final checkpoint, before the summary). After every kill each complete checkpoint equals
the reference's of the same update tensor for tensor, and metrics.csv's complete rows are
the reference's first rows; the last resume ends with the reference's rows and weights.

Each segment is forked from a server that imported policygrad once (multiprocessing's
forkserver), so a kill costs no interpreter start-up; a segment runs ``policygrad.cli.main``,
what the ``policygrad`` command runs.
"""

import csv
import io
import multiprocessing
import os
import signal
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_checkpoint import TIME_COLUMNS, assert_same_run

from policygrad.checkpoint import PAUSE_STAGES, PAUSE_VARIABLE, checkpoint_dirs, update_of

ROLLOUT, ENVS, UPDATES, EVERY = 32, 4, 45, 3
RUN = [
    "ppo",
    "CartPole-v1",
    "--seed",
    "1",
    "--quiet",
    "--steps",
    str(ROLLOUT * ENVS * UPDATES),
    "--num-envs",
    str(ENVS),
    *("--set", f"rollout_steps={ROLLOUT}", "--set", "minibatch_size=64", "--set", "update_epochs=2"),
    *("--set", "normalize_obs=true", "--set", "normalize_reward=true", "--set", "anneal_lr=true"),
    *("--set", f"checkpoint_every={EVERY}", "--set", "keep_checkpoints=1000"),  # every one compared
    *("--set", "eval_every=1536", "--set", "eval_episodes=2", "--set", "target_return=none"),
]


def run_cli(argv, pause):
    """A segment: the ``policygrad`` command, optionally paused inside one checkpoint write."""
    if pause is not None:
        os.environ[PAUSE_VARIABLE] = pause
    from policygrad.cli import main

    sys.exit(main(argv))


def complete_rows(run_dir):
    """metrics.csv's rows without the time columns; a last line cut by the kill is left out."""
    path = run_dir / "metrics.csv"
    text = path.read_text() if path.exists() else ""
    text = text[: text.rfind("\n") + 1]
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(io.StringIO(text))]


def newest_update(run_dir):
    """The update resume starts from: the newest complete checkpoint (``latest`` may lag it after a kill)."""
    complete = checkpoint_dirs(run_dir)
    return update_of(complete[0]) if complete else -1


def assert_prefix_of_reference(crashed, reference):
    rows, ref_rows = complete_rows(crashed), complete_rows(reference)
    assert rows == ref_rows[: len(rows)]
    for path in checkpoint_dirs(crashed):
        twin = reference / "checkpoints" / path.name
        if not twin.exists():  # a checkpoint written on time (checkpoint_seconds), not by count
            continue
        for name in ("model.safetensors", "optimizer.safetensors"):
            ours, theirs = load_file(str(path / name)), load_file(str(twin / name))
            assert ours.keys() == theirs.keys()
            assert all(torch.equal(ours[k], theirs[k]) for k in ours), f"{path.name}/{name}"


@pytest.mark.slow
def test_kill_9_at_20_seeded_instants_then_resume_is_the_uninterrupted_run(tmp_path):
    context = multiprocessing.get_context("forkserver")
    # what a segment imports, imported once: a kill then costs a fork, not an interpreter's start
    context.set_forkserver_preload(
        ["policygrad.cli", "policygrad.trainer", "policygrad.kernels", "torch.utils.tensorboard", "matplotlib.pyplot"]
    )
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"

    def start(argv, pause=None):
        process = context.Process(target=run_cli, args=([str(a) for a in argv], pause))
        process.start()
        return process

    start(["--version"]).join()  # the fork server imports policygrad once, here
    started = time.perf_counter()
    first = start(["train", *RUN, "--out", reference])
    first.join()
    updates = len(complete_rows(reference))  # about UPDATES: steps of ended episodes are not counted
    seconds_per_update = (time.perf_counter() - started) / updates
    assert first.exitcode == 0 and updates > 5 * EVERY

    rng = np.random.default_rng(20)
    kinds = rng.permutation(["start"] * 4 + ["training"] * 9 + ["checkpoint"] * 7)
    targets = iter(np.sort(rng.integers(1, updates - 5 * EVERY, size=len(kinds))))
    signal_file = tmp_path / "paused"
    kills = []
    for kind in [*kinds, "final"]:
        # killed before its first checkpoint, a run is started again by train (nothing to resume)
        argv = ["resume", crashed, "--quiet"] if checkpoint_dirs(crashed) else ["train", *RUN, "--out", crashed]
        pause = None
        if kind == "checkpoint":  # the next checkpoint at or after the target, at a random stage
            update = -(-max(next(targets), newest_update(crashed) + 1) // EVERY) * EVERY
            if update >= updates:  # earlier kills went that far: kill this resume in its start instead
                kind = "start"
            pause = f"{update}:{rng.choice(PAUSE_STAGES)}:{signal_file}"
        if kind == "final":  # after the final checkpoint, before the summary
            pause = f"{updates}:done:{signal_file}"
        pause = pause if kind != "start" else None
        process = start(argv, pause)
        if kind == "start":  # in the resume's own start: loading, cleaning, truncating metrics.csv
            time.sleep(rng.uniform(0.0, 0.25))  # short: on a fast machine the rest of the run is not long
        elif kind == "training":  # anywhere in the next few updates, checkpoint writes included
            target = next(targets)
            while newest_update(crashed) < target and process.is_alive():
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, EVERY * seconds_per_update))
        else:
            while not signal_file.exists() and process.is_alive():
                time.sleep(0.005)
        assert process.is_alive(), f"the run ended before the kill {len(kills) + 1} ({kind})"
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        signal_file.unlink(missing_ok=True)
        kills.append((kind, newest_update(crashed), pause))
        assert_prefix_of_reference(crashed, reference)

    last = start(["resume", crashed, "--quiet"])
    last.join()
    assert last.exitcode == 0
    assert len(kills) == 21 and sum(kind == "checkpoint" for kind, _, _ in kills) >= 5, kills
    assert_same_run(reference, crashed)
    assert (crashed / "summary.json").exists()
    assert not list((crashed / "checkpoints").glob(".tmp_*"))
