"""`policygrad lm train --backend ray`: responses sampled by Ray workers, bit-identical to local sampling.

Equality with --backend local (metrics row for row, final weights bit for bit), a killed
sampling worker recreated with the batch sampled again, a killed worker without restarts
failing fast with a resumable checkpoint, and layouts refused up front.
"""

import os
import signal
import threading
import time

import pytest
import ray_helpers  # sets Ray's environment variables before Ray is imported

ray = pytest.importorskip("ray")
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from policygrad.cli import main  # noqa: E402
from policygrad.config import build_config  # noqa: E402
from policygrad.errors import PolicygradError  # noqa: E402
from policygrad.lm.algorithms import get_algorithm  # noqa: E402
from policygrad.lm.trainer import LMTrainer  # noqa: E402

pytestmark = pytest.mark.timeout(180)  # hard limit per test: a misconfigured Ray fails, never hangs
SETTINGS = dict(
    task="sum", updates=6, prompts_per_update=8, samples_per_prompt=4, checkpoint_every=2, max_train_seconds=None,
    eval_prompts=64,
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray for the module (2 CPUs, loopback only); the sampler joins it instead of starting its own."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, _system_config={"worker_niceness": 0})
    yield
    ray.shutdown()


def train(run_dir, reference, algo="grpo", during=None, **overrides):
    """Train with the Python API; ``during(trainer)`` runs in a thread alongside. Returns the trainer."""
    cfg = build_config(get_algorithm(algo).Config, {**SETTINGS, **overrides})
    trainer = LMTrainer.new(algo, cfg, run_dir, reference, quiet=True)
    helper = threading.Thread(target=during, args=(trainer,)) if during else None
    if helper:
        helper.start()
    try:
        trainer.run()
    finally:
        if helper:
            helper.join()
    return trainer


def same_run(a, b):
    ra, rb = ray_helpers.rows(a), ray_helpers.rows(b)
    assert len(ra) == len(rb) == SETTINGS["updates"]
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        assert x == y, f"row {i}: {x} != {y}"
    wa = load_file(str(a / "policy" / "model.safetensors"))
    wb = load_file(str(b / "policy" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory, sum_reference):
    """The --backend local reference runs, one per algorithm."""
    root = tmp_path_factory.mktemp("lm-local")
    return {algo: train(root / algo, sum_reference, algo).run_dir for algo in ("grpo", "ppo")}


def kill_worker(k, at_update, killed):
    """A ``during`` callback: SIGKILL rollout worker ``k`` once the trainer has finished ``at_update`` updates.

    ``killed["sampler"]`` keeps the trainer's sampler, to inspect after the run.
    """

    def during(trainer):
        while trainer.update < at_update or trainer._ray_sampler is None:
            if trainer.update >= SETTINGS["updates"]:
                return
            time.sleep(0.001)
        killed["sampler"] = trainer._ray_sampler
        os.kill(trainer._ray_sampler.group.pids[k], signal.SIGKILL)

    return during


@pytest.mark.parametrize("algo", ["grpo", "ppo"])  # ppo: a value head, sampled with the responses
def test_ray_sampling_equals_local(tmp_path, sum_reference, local_runs, algo):
    train(tmp_path / "ray", sum_reference, algo, backend="ray", workers=2, worker_cpus=0.5)
    same_run(local_runs[algo], tmp_path / "ray")


def test_killed_worker_is_recreated_and_the_batch_sampled_again(tmp_path, sum_reference, local_runs):
    killed = {}
    during = kill_worker(1, 2, killed)
    trainer = train(tmp_path / "ray", sum_reference, backend="ray", workers=2, max_worker_restarts=1, during=during)
    assert killed["sampler"].restarts == [0, 1] and trainer._ray_sampler is None  # stopped at the end of the run
    same_run(local_runs["grpo"], tmp_path / "ray")


def test_killed_worker_without_restarts_fails_fast_and_the_run_resumes(tmp_path, sum_reference, local_runs):
    run = tmp_path / "ray"
    start = time.monotonic()
    with pytest.raises(PolicygradError, match=r"rollout worker 0 \(responses 0-15\) died .*policygrad lm resume"):
        train(run, sum_reference, backend="ray", workers=2, during=kill_worker(0, 3, {}))
    assert time.monotonic() - start < 60
    assert main(["lm", "resume", str(run), "--quiet"]) == 0  # on the saved config: Ray again
    same_run(local_runs["grpo"], run)


def test_layouts_the_workers_cannot_sample_exactly_are_refused(tmp_path, sum_reference, capsys):
    code = main(
        ["lm", "train", "grpo", "sum", "--ref", str(sum_reference), "--out", str(tmp_path / "run"), "--quiet"]
        + ["--backend", "ray", "--workers", "9", "--set", "prompts_per_update=8", "--set", "samples_per_prompt=4"]
    )
    err = capsys.readouterr().err
    assert code != 0 and "--workers 9 would sample fewer than 4 responses each (batch of 32" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
