"""One owner per run directory: a second ``gandist train`` on a busy run directory exits 2
naming the holder; a lock whose holder died (killed, or on a node that is gone, or the run a
Slurm requeue replaced) is taken over with a message."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults_helpers import REPO, TINY, env, submit_job, wait_for, wait_for_requeued_job
from gandist.errors import EXIT_BAD_INPUT
from gandist.run_lock import LOCK_FILE, RunDirBusy, RunLock

LONG = [*TINY, "train.steps=100000", "checkpoint.every_steps=100000", "log.every_steps=100000"]


def _start(run_dir: Path, steps_args: list[str]) -> subprocess.Popen:
    log = open(run_dir.parent / f"{run_dir.name}.log", "w")  # a file, not a pipe: a long run must never block on output
    return subprocess.Popen([sys.executable, "-m", "gandist", "train", "--run-dir", str(run_dir), *steps_args],
                            cwd=REPO, env=env(), stdout=log, stderr=subprocess.STDOUT, text=True)


def _output(run_dir: Path) -> str:
    return (run_dir.parent / f"{run_dir.name}.log").read_text()


def _plant_lock(run_dir: Path, age_sec: float, **fields) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    holder = {"host": "node-gone", "pid": 4242, "pid_start": "1", "since": "2026-11-28T10:00:00+00:00",
              "slurm_job_id": None, "slurm_restart_count": 0, **fields}
    path = run_dir / LOCK_FILE
    path.write_text(json.dumps(holder))
    os.utime(path, (time.time() - age_sec, time.time() - age_sec))


def test_second_start_exits_2_naming_the_holder_and_first_run_is_untouched(tmp_path, gandist_cache):
    run_dir = tmp_path / "run"
    first = _start(run_dir, LONG)
    try:
        wait_for(lambda: "-> 100000" in _output(run_dir) or first.poll() is not None, 120, "the first run to start training")
        assert first.poll() is None, _output(run_dir)[-2000:]
        config_before = (run_dir / "config.yaml").read_text()
        second = subprocess.run([sys.executable, "-m", "gandist", "train", "--run-dir", str(run_dir), *TINY,
                                 "train.steps=4", "optim.lr_g=0.5"],
                                cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == EXIT_BAD_INPUT, second.stderr[-2000:]
        err = second.stderr
        assert f"--run-dir {run_dir} is in use by another run" in err
        assert f"host {socket.gethostname()}, pid {first.pid}, since 20" in err, err
        assert "Traceback" not in err
        assert (run_dir / "config.yaml").read_text() == config_before  # the second run wrote nothing
        assert first.poll() is None  # and the first one trains on
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 3  # its preemption save, as usual
    assert not (run_dir / LOCK_FILE).exists()  # released at exit


def test_lock_of_a_killed_holder_is_taken_over(tmp_path, gandist_cache):
    run_dir = tmp_path / "run"
    first = _start(run_dir, LONG)
    wait_for(lambda: (run_dir / LOCK_FILE).exists(), 60, "the lock")
    holder = json.loads((run_dir / LOCK_FILE).read_text())
    first.kill()
    first.communicate(timeout=60)
    assert (run_dir / LOCK_FILE).exists()  # kill -9 leaves it behind
    second = subprocess.run([sys.executable, "-m", "gandist", "train", "--run-dir", str(run_dir), *TINY, "train.steps=2"],
                            cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"taking over {run_dir / LOCK_FILE} from a run that is gone" in second.stderr
    assert f"pid {holder['pid']} is not running on this host" in second.stderr


def test_lock_from_another_host_is_taken_over_only_after_its_heartbeat_stops(tmp_path):
    run_dir = tmp_path / "run"
    _plant_lock(run_dir, age_sec=5)
    with pytest.raises(RunDirBusy, match=r"host node-gone, pid 4242, since 2026-11-28T10:00:00\+00:00"):
        RunLock(run_dir, stale_after_sec=60).acquire()
    messages = []
    _plant_lock(run_dir, age_sec=600)
    lock = RunLock(run_dir, stale_after_sec=60, log=messages.append)
    lock.acquire()
    try:
        assert "no heartbeat for 600 s" in messages[0] and "host node-gone" in messages[0]
        assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    assert not (run_dir / LOCK_FILE).exists()


def test_requeued_slurm_job_takes_over_its_previous_runs_lock(tmp_path, monkeypatch):
    """After a requeue the job may start on another node while the dead node's heartbeat still looks fresh."""
    run_dir = tmp_path / "run"
    _plant_lock(run_dir, age_sec=1, slurm_job_id="77", slurm_restart_count=0)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    with pytest.raises(RunDirBusy, match="Slurm job 77"):  # the same incarnation: not ours to take
        RunLock(run_dir).acquire()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    messages = []
    lock = RunLock(run_dir, log=messages.append)
    lock.acquire()
    lock.release()
    assert "restart 1 of the same Slurm job" in messages[0]


def test_heartbeat_touches_the_lock(tmp_path):
    lock = RunLock(tmp_path, heartbeat_sec=0.05)
    lock.acquire()
    try:
        path = tmp_path / LOCK_FILE
        os.utime(path, (0, 0))
        wait_for(lambda: path.stat().st_mtime > 0, 10, "a heartbeat")
    finally:
        lock.release()


def test_lock_of_a_reused_pid_is_taken_over(tmp_path):
    """Our own pid but another start time: the holder died and its pid was given to this process."""
    _plant_lock(tmp_path, age_sec=1, host=socket.gethostname(), pid=os.getpid(), pid_start="1")
    messages = []
    lock = RunLock(tmp_path, log=messages.append)
    lock.acquire()
    lock.release()
    assert f"pid {os.getpid()} is now another process" in messages[0]


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_bad_run_dir_exits_2_naming_it(tmp_path, root_tmpfs, kind):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("not a directory")
        expected = "exists and is not a directory"
    else:
        # Root writes through permissions; a read-only mount refuses everyone.
        target = (root_tmpfs(64, "ro") if os.geteuid() == 0 else _read_only_dir(tmp_path)) / "run"
        expected = "cannot create it"
    proc = subprocess.run([sys.executable, "-m", "gandist", "train", "--run-dir", str(target), *TINY, "train.steps=1"],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr[-2000:]
    assert f"--run-dir {target}" in proc.stderr and expected in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def _read_only_dir(tmp_path: Path) -> Path:
    path = tmp_path / "ro"
    path.mkdir()
    path.chmod(0o500)
    return path


@pytest.mark.slow
@pytest.mark.slurm
def test_requeued_slurm_job_takes_over_the_lock_its_first_run_left_on_another_node(tmp_path, gandist_cache):
    """On the local Slurm: the job's first run leaves a fresh lock as if from a node that died, then
    requeues itself (as Slurm does after a node failure); the restarted job takes the lock over."""
    from conftest import require_slurm

    require_slurm()
    run_dir, log = tmp_path / "run", tmp_path / "job.out"
    script = tmp_path / "job.sh"
    script.write_text(f"""#!/bin/bash
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then
    {sys.executable} -c '
import json, os, pathlib
run = pathlib.Path("{run_dir}"); run.mkdir(parents=True, exist_ok=True)
(run / "{LOCK_FILE}").write_text(json.dumps({{"host": "node-that-died", "pid": 4242, "pid_start": "1",
    "since": "2026-11-28T10:00:00+00:00", "slurm_job_id": os.environ["SLURM_JOB_ID"], "slurm_restart_count": 0}}))'
    echo "first run: lock planted, requeueing"
    scontrol requeue "$SLURM_JOB_ID"
    sleep 300
    exit 0
fi
exec {sys.executable} -m gandist train --run-dir {run_dir} {' '.join(TINY)} train.steps=2
""")
    job = submit_job(["--requeue", f"--output={log}", "--open-mode=append", "--time=10", "--export=ALL", str(script)])
    try:
        text = wait_for_requeued_job(job, log)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    assert "first run: lock planted" in text
    assert f"taking over {run_dir / LOCK_FILE} from a run that is gone (host node-that-died, pid 4242" in text
    assert "restart 1 of the same Slurm job" in text
    assert (run_dir / "ckpt" / "step_00000002" / "MANIFEST.json").is_file()
    assert not (run_dir / LOCK_FILE).exists()
