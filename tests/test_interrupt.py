"""Ctrl-C: the first SIGINT saves a checkpoint at the next step boundary and exits 130; a second
one stops at once (exit 130, no checkpoint of that step)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from faults_helpers import REPO, TINY, env, latest_step, wait_for
from gandist import preemption
from gandist.config import PreemptionConfig
from gandist.errors import EXIT_INTERRUPTED


@pytest.fixture(autouse=True)
def _clean_handlers():
    # As at a terminal: SIGINT not ignored (pytest started in the background of a script inherits SIG_IGN).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    preemption.uninstall()
    yield
    preemption.uninstall()
    signal.signal(signal.SIGINT, before)


def _sigint_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ignored_sigint_stays_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preemption.install(PreemptionConfig())
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGINT)
    assert not preemption.stop_requested()


def test_first_sigint_requests_a_stop_and_the_second_raises():
    preemption.install(PreemptionConfig())
    os.kill(os.getpid(), signal.SIGINT)
    assert preemption.stop_requested() and preemption.interrupted()
    assert preemption.exit_code() == EXIT_INTERRUPTED
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    preemption.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_keeps_exit_code_3():
    preemption.install(PreemptionConfig())
    os.kill(os.getpid(), signal.SIGTERM)
    assert preemption.stop_requested() and not preemption.interrupted()
    assert preemption.exit_code() == 3


def _start(run_dir: Path, overrides: list[str]) -> tuple[subprocess.Popen, Path]:
    log = run_dir.parent / f"{run_dir.name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "gandist", "train", "--run-dir", str(run_dir), *TINY, *overrides],
                            cwd=REPO, env=env(), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            preexec_fn=_sigint_as_at_a_terminal)
    return proc, log


def test_ctrl_c_saves_at_the_step_boundary_and_exits_130(tmp_path, gandist_cache):
    run_dir = tmp_path / "run"
    proc, log = _start(run_dir, ["train.steps=100000", "checkpoint.every_steps=100000", "log.every_steps=100000"])
    try:
        wait_for(lambda: "-> 100000" in log.read_text() or proc.poll() is not None, 120, "training to start")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert proc.returncode == EXIT_INTERRUPTED, out[-3000:]
    assert "received SIGINT: will checkpoint" in out
    assert "interrupt (SIGINT): saved" in out and "exiting with code 130" in out
    assert latest_step(run_dir) > 0  # the checkpoint of the step it was in
    assert not (run_dir / "run.lock").exists()


def test_second_ctrl_c_stops_at_once(tmp_path, gandist_cache):
    run_dir = tmp_path / "run"
    # Slow steps (a big batch through a wide DCGAN): the second signal lands inside a step.
    proc, log = _start(run_dir, ["model.name=dcgan", "model.g_width=64", "model.d_width=64", "train.batch_size=512",
                                 "train.steps=100000", "checkpoint.every_steps=100000", "log.every_steps=100000"])
    try:
        wait_for(lambda: "-> 100000" in log.read_text() or proc.poll() is not None, 120, "training to start")
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "received SIGINT" in log.read_text(), 60, "the first SIGINT to be handled")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert proc.returncode == EXIT_INTERRUPTED, out[-3000:]
    assert "received SIGINT again: stopping now" in out and "gandist train: interrupted" in out
    assert "interrupt (SIGINT): saved" not in out
    assert "Traceback" not in out
    assert not (run_dir / "ckpt" / "latest").exists()
    assert not (run_dir / "run.lock").exists()  # released on the way out


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getpgid(int(d)) == pgid:
                    alive.append(int(d))
            except ProcessLookupError:
                pass
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, 3)])
def test_signal_to_the_whole_group_with_loader_workers_saves_and_exits(tmp_path, gandist_cache, sig, code):
    # A terminal's Ctrl-C, and Slurm's SIGTERM, reach every process of the group, the loader
    # workers too: the run still saves at the step boundary and exits with its usual code, and no
    # process of the group is left behind (workers closed, neither orphaned nor waited on forever).
    # That a worker ignores these signals is checked in test_data_worker_pool.py.
    run_dir = tmp_path / "run"
    log = tmp_path / "run.log"
    proc = subprocess.Popen([sys.executable, "-m", "gandist", "train", "--run-dir", str(run_dir), *TINY,
                             "data.num_workers=2", "train.steps=100000", "checkpoint.every_steps=100000",
                             "log.every_steps=100000"],
                            cwd=REPO, env=env(), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            preexec_fn=_sigint_as_at_a_terminal, start_new_session=True)
    pgid = proc.pid
    try:
        # The workers start with the first batch, after the run's header line: wait for them.
        wait_for(lambda: len(_group_alive(pgid)) >= 3 or proc.poll() is not None, 120,
                 "the training process and its 2 loader workers")
        assert proc.poll() is None, log.read_text()[-3000:]
        os.killpg(pgid, sig)
        proc.wait(timeout=120)
        wait_for(lambda: not _group_alive(pgid), 30, "the loader workers to exit")
    finally:
        if proc.poll() is None:
            os.killpg(pgid, signal.SIGKILL)
    out = log.read_text()
    assert proc.returncode == code, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert latest_step(run_dir) > 0
