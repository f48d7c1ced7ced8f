"""Faults get one clear line and lose nothing: a broken environment, a full disk."""

import csv
import os
import shutil
import subprocess

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from policygrad.errors import PolicygradError
from policygrad.trainer import Trainer, resolve_config, train


class BrokenCartPole(CartPoleEnv):
    """CartPole whose env ``index`` (its first reset seed) breaks at step ``at`` of its first episode."""

    def __init__(self, fault="raise", index=1, at=7, render_mode=None):
        super().__init__(render_mode=render_mode)
        self.fault, self.index, self.at, self.env_index, self.steps = fault, index, at, None, 0

    def reset(self, *, seed=None, options=None):
        if seed is not None and self.env_index is None:
            self.env_index = seed
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.steps += 1
        obs, reward, terminated, truncated, info = super().step(action)
        if self.env_index == self.index and self.steps == self.at:
            if self.fault == "raise":
                raise RuntimeError("the simulator lost its connection")
            if self.fault == "nan":
                obs = obs * np.nan
            if self.fault == "shape":
                obs = np.zeros(5, dtype=np.float32)
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize(
    "fault,message",
    [
        ("raise", "env 1 raised RuntimeError in step() at step 7 of its episode: the simulator lost its connection"),
        ("nan", "env 1 returned a non-finite observation (nan), seen at step 3 of update 2"),
        ("shape", "env 1 returned an observation of shape (5,), not (4,)"),
    ],
)
def test_a_broken_environment_is_named_by_index_and_step(tmp_path, fault, message):
    env_id = f"policygrad-test/Broken-{fault}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=BrokenCartPole, kwargs={"fault": fault}, max_episode_steps=500)
    with pytest.raises(PolicygradError) as err:
        train("a2c", env_id, out=tmp_path / "run", total_steps=400, num_envs=3, rollout_steps=5, eval_every=0)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()  # the starting checkpoint is kept


def test_observations_that_cannot_hold_a_nan_are_not_scanned_but_rewards_always_are():
    from types import SimpleNamespace

    import torch

    from policygrad import env_faults, spaces

    image, flags = gym.spaces.Box(0, 255, (4, 8, 8), np.uint8), gym.spaces.MultiBinary(3)
    assert spaces.always_finite(gym.spaces.Dict({"image": image, "cell": gym.spaces.Discrete(5), "flags": flags}))
    assert not spaces.always_finite(gym.spaces.Tuple((image, gym.spaces.Box(-1.0, 1.0, (2,), np.float32))))
    nan_obs = SimpleNamespace(observations=torch.full((2, 3, 4), float("nan")), rewards=torch.zeros(2, 3))
    env_faults.check_rollout(nan_obs, update=1, observations=False)  # not scanned: no error
    with pytest.raises(env_faults.EnvFault, match="non-finite observation"):
        env_faults.check_rollout(nan_obs, update=1)
    rewards = torch.tensor([[0.0, float("inf"), 0.0]] * 2)
    nan_reward = SimpleNamespace(observations=torch.zeros(2, 3, 4), rewards=rewards)
    with pytest.raises(env_faults.EnvFault, match="non-finite reward"):
        env_faults.check_rollout(nan_reward, update=1, observations=False)


def rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [
            {k: v for k, v in r.items() if k not in ("wall_time", "steps_per_second")} for r in csv.DictReader(handle)
        ]


def test_a_full_disk_is_one_line_and_resume_loses_nothing(tmp_path, monkeypatch):
    import policygrad.checkpoint as checkpoint

    settings = {"total_steps": 3000, "num_envs": 4, "rollout_steps": 5, "checkpoint_every": 20, "eval_every": 0}
    train("a2c", "CartPole-v1", out=tmp_path / "reference", **settings)
    real, calls = checkpoint.save_file, []

    def full_disk(tensors, path):
        calls.append(path)
        if len(calls) == 8:  # the 4th checkpoint's optimiser file
            raise OSError(28, "No space left on device")
        return real(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    cfg, _ = resolve_config("a2c", "CartPole-v1", settings)
    with pytest.raises(PolicygradError) as err:
        Trainer.new("a2c", cfg, tmp_path / "run", quiet=True).run()
    text = str(err.value)
    assert "optimizer.safetensors (No space left on device;" in text and "MiB free" in text
    assert "the last intact checkpoint is update_0000040" in text and f"policygrad resume {tmp_path / 'run'}" in text
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp_*"))
    monkeypatch.setattr(checkpoint, "save_file", real)
    Trainer.resume(tmp_path / "run", quiet=True).run()
    assert rows(tmp_path / "run") == rows(tmp_path / "reference")


def mount_tmpfs(path, kib):
    """Mount a tmpfs of ``kib`` KiB at ``path``; False where this process may not (mounting needs root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)]).returncode == 0


def test_a_real_full_disk_is_one_line_and_resume_after_freeing_space_loses_nothing(tmp_path, capsys):
    """A tmpfs too small for the run; the line names the file, the space, the last checkpoint, how to resume.

    Where this process may not mount one (not root), the writer that fails on demand above stands in.
    """
    from policygrad.cli import main

    disk = tmp_path / "disk"
    run = ["a2c", "CartPole-v1", "--quiet", "--steps", "3000", "--num-envs", "4", "--set", "rollout_steps=5"]
    run += ["--set", "checkpoint_every=10", "--set", "keep_checkpoints=1000", "--set", "eval_every=0"]
    assert main(["train", *run, "--out", str(tmp_path / "reference")]) == 0
    used = sum(f.stat().st_size for f in (tmp_path / "reference").rglob("*") if f.is_file())
    if not mount_tmpfs(disk, used // 2048):  # half what the run writes
        pytest.skip("mounting a tmpfs needs root; test_a_full_disk_is_one_line_and_resume_loses_nothing covers it")
    try:
        capsys.readouterr()
        assert main(["train", *run, "--out", str(disk / "run")]) == 1
        line = capsys.readouterr().err
        assert line.count("\n") == 1 and "No space left on device" in line and "MiB free" in line, line
        assert str(disk / "run") in line.split("(")[0]  # the file that could not be written
        intact = sorted((disk / "run" / "checkpoints").glob("update_*"))[-1].name
        assert f"the last intact checkpoint is {intact}" in line
        assert line.rstrip().endswith(f"policygrad resume {disk / 'run'}")
        subprocess.run(["mount", "-o", f"remount,size={used // 256}k", str(disk)], check=True)  # space freed
        assert main(["resume", str(disk / "run"), "--quiet"]) == 0
        assert rows(disk / "run") == rows(tmp_path / "reference")
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_write_error_naming_its_file_in_bytes_is_one_line(tmp_path, monkeypatch, capsys):
    """TensorBoard's event writer raises its OSError with the file name as bytes; the line still names it."""
    from policygrad.cli import main

    events = tmp_path / "run" / "tensorboard" / "events.out.tfevents.0"

    def lost_folder(self, *args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", os.fsencode(events))

    monkeypatch.setattr(Trainer, "run", lost_folder)
    code = main(["train", "a2c", "CartPole-v1", "--quiet", "--steps", "100", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert f"could not write {events} (No such file or directory;" in err and "Traceback" not in err
