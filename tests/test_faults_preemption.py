"""gandist.preemption: signals set a flag (nothing else), configurable signals, requeue ids and
the messages a run prints when it cannot requeue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gandist import preemption
from gandist.config import PreemptionConfig, load_config
from gandist.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_handlers():
    preemption.uninstall()
    yield
    preemption.uninstall()


def test_signal_only_sets_the_flag_and_other_signals_keep_their_handlers():
    before_usr2 = signal.getsignal(signal.SIGUSR2)
    preemption.install(PreemptionConfig())
    assert not preemption.stop_requested()
    os.kill(os.getpid(), signal.SIGUSR1)
    assert preemption.stop_requested()
    assert preemption.received_signals() == ["SIGUSR1"]
    os.kill(os.getpid(), signal.SIGTERM)  # default config handles TERM too: the process lives on
    assert preemption.received_signals() == ["SIGUSR1", "SIGTERM"]
    assert signal.getsignal(signal.SIGUSR2) is before_usr2
    preemption.uninstall()
    assert not preemption.stop_requested()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_configured_signal_replaces_the_defaults():
    cfg = load_config(overrides=["preemption.signals=[SIGUSR2]", "preemption.requeue_signals=[USR2]"]).validate().preemption
    preemption.install(cfg)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # not ours any more
    os.kill(os.getpid(), signal.SIGUSR2)
    assert preemption.received_signals() == ["SIGUSR2"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["preemption.signals=[SIGFOO]"], "preemption.signals: unknown signal 'SIGFOO'"),
        (["preemption.signals=[SIGKILL]"], "preemption.signals: SIGKILL cannot be caught"),
        (["preemption.signals=[SIGTERM]"], "preemption.requeue_signals: SIGUSR1 not in preemption.signals"),
        (["preemption.requeue=maybe"], "preemption.requeue: expected true or false"),
    ],
)
def test_bad_preemption_config_names_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides).validate()


def test_string_list_override():
    cfg = load_config(overrides=["preemption.signals=SIGTERM,SIGUSR2", "preemption.requeue_signals=SIGUSR2"]).validate()
    assert cfg.preemption.signals == ["SIGTERM", "SIGUSR2"]


def test_slurm_job_id_uses_array_form():
    assert preemption.slurm_job_id({}) is None
    assert preemption.slurm_job_id({"SLURM_JOB_ID": "77"}) == "77"
    env = {"SLURM_JOB_ID": "80", "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3"}
    assert preemption.slurm_job_id(env) == "77_3"


def test_missing_scontrol_gives_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no scontrol, as in many containers
    ok, msg = preemption.requeue_slurm_job()
    assert not ok
    assert "'scontrol' is not on PATH" in msg and "1234" in msg and "resubmit" in msg


def test_on_preempted_decides_from_config_and_signal(monkeypatch, tmp_path):
    logs: list[str] = []
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    preemption.install()
    os.kill(os.getpid(), signal.SIGUSR1)
    assert not preemption.on_preempted(PreemptionConfig(), log=logs.append)
    assert "not under Slurm" in logs[-1]

    monkeypatch.setenv("SLURM_JOB_ID", "55")
    assert not preemption.on_preempted(PreemptionConfig(requeue=False), log=logs.append)
    assert "preemption.requeue=false" in logs[-1]
    assert not preemption.on_preempted(PreemptionConfig(), log=logs.append)
    assert "'scontrol' is not on PATH" in logs[-1]  # it did try: USR1 requeues

    preemption.uninstall()
    preemption.install()
    os.kill(os.getpid(), signal.SIGTERM)  # scancel sends TERM: a cancelled job must not come back
    assert not preemption.on_preempted(PreemptionConfig(), log=logs.append)
    assert "received SIGTERM" in logs[-1] and "preemption.requeue_signals" in logs[-1]


def test_signal_during_a_busy_loop_stops_at_the_step_boundary(tmp_path):
    """A real process: the signal lands mid-'step'; the step still completes and the loop then
    exits with code 3 after finishing exactly the step it was in."""
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        from gandist import preemption
        from gandist.errors import EXIT_PREEMPTED
        preemption.install()
        print("ready", flush=True)
        step = 0
        while True:
            acc = 0
            for i in range(200_000):  # one "step": the handler must not cut it short
                acc += i
            assert acc == 199999 * 200000 // 2
            step += 1
            if preemption.stop_requested():
                print(f"stopped after step {step}", flush=True)
                sys.exit(EXIT_PREEMPTED)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert "stopped after step" in out
    assert "received SIGTERM" in err
