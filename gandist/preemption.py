"""Preemption: a signal asks the run to stop at the next step boundary; under Slurm the job
requeues itself after the preemption checkpoint.

The training loop uses three calls::

    preemption.install(cfg.preemption)                   # once, at start, on every rank
    if stop agreed by all ranks (preemption.stop_requested()):   # at every step boundary
        save_checkpoint(...)
        preemption.on_preempted(cfg.preemption, is_main=engine.is_main, log=logger.info)
        return EXIT_PREEMPTED

The handler only records the signal. Saving inside a handler would run in the middle of
whatever Python bytecode was executing (mid-backward, mid-collective); the step boundary is the
one point where every rank's state is consistent and every rank can join the save.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from types import FrameType
from typing import Callable

from gandist.config import PreemptionConfig, canonical_signal_name
from gandist.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED

# Process-wide state: signal handlers are process-wide too. Written only by the handler and
# by install()/uninstall(); a list append is atomic under the GIL.
_received: list[int] = []
_installed: dict[int, object] = {}
_who = ""  # "rank R on HOST " in a multi-process run (set by install)


def install(cfg: PreemptionConfig | None = None) -> None:
    """Make each of ``cfg.signals`` (default: SIGTERM, SIGUSR1) set the stop flag.

    Call once per process before training, in the main thread. Signals other than these keep
    their handlers. Calling it again adds signals; the flag is not cleared.
    """
    global _who
    cfg = cfg or PreemptionConfig()
    _who = _rank_and_host()
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("preemption.install must run in the main thread (Python delivers signals there)")
    for name in cfg.signals:
        num = int(getattr(signal.Signals, canonical_signal_name(name)))  # names validated by the config
        previous = signal.signal(num, _handler)
        _installed.setdefault(num, previous)
    # Ctrl-C: the first saves at the step boundary like a preemption (exit 130), a second one
    # stops at once. Always handled, unless the process started with SIGINT ignored (a
    # background job of a script, `trap '' INT`): that choice is kept, as POSIX programs do.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        previous = signal.signal(signal.SIGINT, _handler)
        _installed.setdefault(int(signal.SIGINT), previous)


def uninstall() -> None:
    """Restore the handlers that ``install`` replaced and clear the flag (tests, end of run)."""
    for num, previous in _installed.items():
        signal.signal(num, previous)  # type: ignore[arg-type]
    _installed.clear()
    _received.clear()


def stop_requested() -> bool:
    """True once any installed signal arrived in this process (the caller all-reduces it)."""
    return bool(_received)


def received_signals() -> list[str]:
    """Names of the signals received so far, in order of arrival."""
    return [signal.Signals(num).name for num in _received]


def interrupted() -> bool:
    """True once SIGINT (Ctrl-C) arrived in this process: the run then exits with code 130."""
    return signal.SIGINT in _received


def exit_code() -> int:
    """The exit code of a run stopped by a signal: 130 after Ctrl-C (128 + SIGINT, as shells
    report it), else EXIT_PREEMPTED (3)."""
    return EXIT_INTERRUPTED if interrupted() else EXIT_PREEMPTED


def _handler(signum: int, frame: FrameType | None) -> None:
    # Only record: see the module docstring. One line so the job log shows when the notice
    # came, written with os.write: print() here can raise "reentrant call inside BufferedWriter"
    # when the signal lands while the main thread is writing to stderr (progress bars do).
    if signum == signal.SIGINT and signal.SIGINT in _received:
        # The second Ctrl-C: the user will not wait for the save; stop where we are (exit 130).
        _write("gandist: received SIGINT again: stopping now, without a checkpoint\n")
        raise KeyboardInterrupt
    first = not _received
    _received.append(signum)
    if first:
        name = signal.Signals(signum).name
        again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
        _write(f"gandist: {_who}received {name}: will checkpoint and stop at the next step boundary{again}\n")


def _rank_and_host() -> str:
    """``rank 1 on node2 `` under a launcher of several processes (so a multi-node job's log shows
    every rank got the notice), else nothing. Worked out before any signal: the handler only formats."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return ""
    return f"rank {os.environ.get('RANK', '?')} on {socket.gethostname()} "


def _write(msg: str) -> None:
    try:
        os.write(2, msg.encode())
    except OSError:
        pass


# After the preemption checkpoint -------------------------------------------------------------


def slurm_job_id(env: dict[str, str] | None = None) -> str | None:
    """The id ``scontrol requeue`` needs: ``<array job>_<task>`` in a job array, else ``SLURM_JOB_ID``.

    In an array ``SLURM_JOB_ID`` is the task's own numeric id, which scontrol also accepts, but
    the ``<array>_<task>`` form is what ``squeue`` shows and is unambiguous across clusters
    that renumber array tasks.
    """
    env = os.environ if env is None else env
    array_job, array_task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return env.get("SLURM_JOB_ID") or None


def requeue_slurm_job(job_id: str | None = None) -> tuple[bool, str]:
    """Run ``scontrol requeue <id>``; returns (success, a message for the log). Never raises.

    Slurm ends the current job soon after the requeue is accepted (SIGTERM, then SIGKILL after
    ``KillWait``), so call this only once the checkpoint is committed.
    """
    job_id = job_id or slurm_job_id()
    if not job_id:
        return False, "not requeueing: SLURM_JOB_ID is not set (not running under Slurm)"
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return False, (
            f"cannot requeue Slurm job {job_id}: 'scontrol' is not on PATH (inside a container?); "
            f"the checkpoint is saved: resubmit the same command, or run 'scontrol requeue {job_id}' outside"
        )
    try:
        proc = subprocess.run([scontrol, "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"cannot requeue Slurm job {job_id}: {e}"
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()
        return False, f"scontrol requeue {job_id} failed (exit {proc.returncode}): {detail}"
    return True, f"requeued Slurm job {job_id}: it restarts from this checkpoint with the same command"


def on_preempted(
    cfg: PreemptionConfig | None = None, is_main: bool = True, log: Callable[[str], None] | None = None
) -> bool:
    """After the preemption checkpoint is committed, on rank 0 (``is_main``): requeue or say why not.
    Other ranks return False at once, so every rank can make the same call.

    Requeues when the run is under Slurm, ``cfg.requeue`` is on and this process received one
    of ``cfg.requeue_signals``. Returns True when the job was requeued. Never raises: the
    checkpoint is already safe and the exit code (3) still tells a wrapper what happened.
    """
    if not is_main:
        return False
    cfg = cfg or PreemptionConfig()
    log = log or (lambda msg: print(f"gandist: {msg}", file=sys.stderr, flush=True))
    got = received_signals()
    requeue_on = {canonical_signal_name(s) for s in cfg.requeue_signals}
    if not slurm_job_id():
        log("preemption checkpoint saved; not under Slurm, so no requeue: run the same command again to resume")
        return False
    if not cfg.requeue:
        log("preemption checkpoint saved; preemption.requeue=false: not requeueing the Slurm job")
        return False
    if not any(s in requeue_on for s in got):
        why = f"received {', '.join(got)}" if got else "this rank received no signal (another rank did)"
        log(
            f"preemption checkpoint saved; not requeueing: {why}, and only "
            f"{', '.join(cfg.requeue_signals) or 'no signals'} requeue (preemption.requeue_signals)"
        )
        return False
    ok, msg = requeue_slurm_job()
    log(msg)
    return ok
