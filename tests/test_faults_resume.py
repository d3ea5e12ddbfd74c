"""Preemption and resume of real 2-process `gandist train` runs (ddp engine, CPU, gloo):
a SIGTERM to one rank stops both at the same step with a checkpoint and exit code 3, the
relaunch ends bitwise equal to an uninterrupted run, and checkpoints move between 2 and 1
processes. A non-finite loss stops all ranks and keeps the last good checkpoint."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import pytest
import torch

from conftest import skip_unless_ci
from faults_helpers import (
    NUM_STEPS, REPO, TINY, assert_same_weights, env, exit_codes, final_weights, launch_cmd, latest_step, reference_run,
    train, wait_for, worker_pids,
)
from gandist.checkpoint import read_manifest, verify_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def preempted(tmp_path_factory):
    """A 2-process run whose rank 1 alone got SIGTERM mid-training (as Slurm signals every
    process of a job); returns (run_dir, launcher output)."""
    run_dir = tmp_path_factory.mktemp("preempted") / "run"
    log = run_dir.parent / "launcher.log"
    with open(log, "w") as out:
        cmd = launch_cmd(run_dir, 2, [*TINY, f"train.steps={NUM_STEPS}"], monitor_interval_sec=5)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env(),
                                stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: f"-> {NUM_STEPS}" in log.read_text(), 240, "the run's start message")
            pids = wait_for(lambda: (p := worker_pids(proc.pid)) and len(p) == 2 and p, 30, "two workers")
            os.kill(pids[1], signal.SIGTERM)
            proc.wait(timeout=240)
        finally:
            proc.kill()
    return run_dir, log.read_text()


def test_sigterm_to_one_rank_stops_both_with_a_checkpoint_and_exit_3(preempted):
    run_dir, output = preempted
    step = latest_step(run_dir)
    assert 0 < step < NUM_STEPS, output[-3000:]
    ckpt = run_dir / "ckpt" / f"step_{step:08d}"
    assert verify_checkpoint(ckpt) is None
    assert {p.name for p in (ckpt / "rank").iterdir()} == {"00000.pt", "00001.pt"}  # both ranks saved
    assert f"saved {ckpt} at step {step}; exiting with code 3" in output
    assert "received SIGTERM" in output
    # torchrun reports each worker's exit code: both ranks exited 3, rank 0 without a signal.
    assert exit_codes(output) == {0: 3, 1: 3}, output[-3000:]


def test_relaunch_resumes_and_ends_equal_to_an_uninterrupted_run(preempted, reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(preempted[0], run_dir)
    step = latest_step(run_dir)
    proc = train(run_dir, 2, [f"train.steps={NUM_STEPS}"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"resuming from {run_dir / 'ckpt' / f'step_{step:08d}'} at step {step}" in proc.stdout
    assert latest_step(run_dir) == NUM_STEPS
    assert_same_weights(run_dir, reference)


def test_two_process_checkpoint_resumes_on_one_process_and_back(preempted, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(preempted[0], run_dir)
    twin = tmp_path / "twin"  # the same resumes again from a copy: a world-size change is deterministic
    shutil.copytree(preempted[0], twin)
    step = latest_step(run_dir)
    one = train(run_dir, 1, [f"train.steps={NUM_STEPS}"])
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    assert f"at step {step}" in one.stdout and "batch 16 per rank x 1 ranks" in one.stdout  # global batch kept
    assert "resuming a checkpoint of 2 process(es) on 1" in one.stdout
    assert read_manifest(run_dir / "ckpt" / f"step_{NUM_STEPS:08d}")["world_size"] == 1
    before = final_weights(run_dir)["G"]

    two = train(run_dir, 2, [f"train.steps={NUM_STEPS + 10}"])
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert f"at step {NUM_STEPS}" in two.stdout and "batch 8 per rank x 2 ranks" in two.stdout
    assert latest_step(run_dir) == NUM_STEPS + 10
    assert read_manifest(run_dir / "ckpt" / f"step_{NUM_STEPS + 10:08d}")["world_size"] == 2
    after = final_weights(run_dir)["G"]
    assert any(not (before[k] == after[k]).all() for k in before)  # it trained on from there

    # Equality where it must hold: the same 2 -> 1 -> 2 path from the same checkpoint ends with
    # the same weights, bit for bit (restored RNG, data position and optimizer state).
    assert train(twin, 1, [f"train.steps={NUM_STEPS}"]).returncode == 0
    twin_one = final_weights(twin)["G"]
    assert all(torch.equal(twin_one[k], before[k]) for k in before)
    assert train(twin, 2, [f"train.steps={NUM_STEPS + 10}"]).returncode == 0
    assert_same_weights(twin, run_dir)


def test_non_finite_loss_stops_every_rank_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    good = train(run_dir, 2, ["train.steps=2", "checkpoint.every_steps=1"])
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    # Resume with an absurd learning rate: the first step's update makes the next losses non-finite.
    proc = train(run_dir, 2, ["--allow-config-change", "train.steps=10", "checkpoint.every_steps=1",
                              "optim.lr_d=1e30", "optim.lr_g=1e30"], timeout=240, monitor_interval_sec=5)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    bad = int(re.search(r"non-finite loss at step (\d+)", out).group(1))
    assert 3 <= bad < 10
    assert latest_step(run_dir) == bad - 1  # the diverged step was never saved; the one before is intact
    assert verify_checkpoint(run_dir / "ckpt" / f"step_{bad - 1:08d}") is None
    assert exit_codes(out) == {0: 1, 1: 1}, out[-3000:]  # every rank stops with TrainingDiverged


@pytest.fixture
def small_disk(tmp_path, reference):
    """A tmpfs with room for one checkpoint of the tiny run but not two (needs root)."""
    ckpt_bytes = sum(f.stat().st_size for f in (reference / "ckpt" / "step_00000100").rglob("*") if f.is_file())
    size_kib = (ckpt_bytes * 3 // 2 + 256 * 1024) // 1024  # + tb events, config, samples
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        skip_unless_ci("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        skip_unless_ci(f"cannot mount tmpfs: {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_during_save_stops_every_rank_and_keeps_the_previous_checkpoint(small_disk):
    run_dir = small_disk / "run"
    # The second checkpoint must coexist with the first until it is committed: it cannot fit.
    proc = train(run_dir, 2, ["train.steps=4", "checkpoint.every_steps=2"], timeout=240, monitor_interval_sec=5)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"disk full while writing checkpoint {run_dir / 'ckpt' / 'step_00000004.tmp'}" in out, out[-3000:]
    assert "the previous checkpoint step_00000002 is intact" in out
    assert exit_codes(out) == {0: 1, 1: 1}, out[-3000:]  # both ranks stop, neither hangs in a collective
    assert latest_step(run_dir) == 2
    assert verify_checkpoint(run_dir / "ckpt" / "step_00000002") is None
    assert not list((run_dir / "ckpt").glob("*.tmp"))
