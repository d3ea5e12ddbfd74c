"""One owner per run directory: ``RUN_DIR/run.lock``, held by rank 0 for the life of a run.

Two trainings writing one run directory interleave their metrics, delete each other's
half-written checkpoints and end with a mix of both configs. So ``gandist train`` creates the
lock file exclusively (``O_CREAT | O_EXCL``, atomic on local and NFS v3+ file systems) before it
writes anything, and a second start exits 2 naming the holder.

The lock records who holds it (host, pid, start time, Slurm job) and its modification time is
the holder's heartbeat: a thread touches it every ``HEARTBEAT_SEC``. A lock whose holder is gone
is taken over, with a message:

* same host: the pid is no longer running (or is another process that reused the pid);
* same Slurm job, later restart (``SLURM_RESTART_COUNT``): Slurm runs one incarnation of a job at
  a time, so the lock is left by the run this requeue replaced, whichever node it ran on;
* another host: no heartbeat for ``stale_after_sec`` (a node that died holds no process we
  could ask about; its heartbeat stops).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from gandist.errors import BadInputError

LOCK_FILE = "run.lock"
#: Seconds between two heartbeats (touches of the lock file) of a live holder.
HEARTBEAT_SEC = 15.0
#: A lock from another host whose heartbeat is older than this is taken over (seconds).
STALE_AFTER_SEC = float(os.environ.get("GANDIST_LOCK_STALE_SEC", "120"))


class RunDirBusy(BadInputError):
    """Another live run holds the run directory's lock (exit 2)."""


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after "(comm)"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def describe(holder: dict[str, Any]) -> str:
    job = f", Slurm job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')}{job}"


class RunLock:
    """The lock of one run directory; ``acquire`` then ``release`` (or use as a context manager)."""

    def __init__(self, run_dir: Path, stale_after_sec: float = STALE_AFTER_SEC, heartbeat_sec: float = HEARTBEAT_SEC,
                 log: Callable[[str], None] | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.stale_after_sec = stale_after_sec
        self.heartbeat_sec = heartbeat_sec
        self.log = log or (lambda msg: print(f"gandist: {msg}", file=sys.stderr, flush=True))
        self._record: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Acquire ----------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock or raise RunDirBusy naming the holder; takes over a dead holder's lock."""
        self._record = {
            "host": socket.gethostname(), "pid": os.getpid(), "pid_start": _process_start(os.getpid()),
            "since": _now_iso(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
        }
        for _ in range(5):  # a few rounds: another starter may take over or release in between
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder, age_sec = self._read_holder()
                if not holder:  # released between our create and our read: try again
                    continue
                why = self._why_dead(holder, age_sec)
                if why is None:
                    raise RunDirBusy(
                        f"--run-dir {self.run_dir} is in use by another run ({describe(holder)}; lock file {self.path}, "
                        f"last heartbeat {age_sec:.0f} s ago). Wait for it to finish, stop it, or use another --run-dir"
                    ) from None
                if self._remove_if_unchanged(holder):
                    self.log(f"taking over {self.path} from a run that is gone ({describe(holder)}): {why}")
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(self._record, indent=1) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:  # a full disk accepts the new inode, then refuses its bytes
                self.path.unlink(missing_ok=True)
                raise BadInputError(f"--run-dir {self.run_dir}: cannot write {self.path}: {e}") from None
            self._start_heartbeat()
            return
        raise RunDirBusy(f"--run-dir {self.run_dir}: could not take {self.path}: other runs keep starting on it")

    def _read_holder(self) -> tuple[dict[str, Any], float]:
        try:
            age_sec = time.time() - self.path.stat().st_mtime
            holder = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, 0.0
        except (OSError, ValueError):
            # Half-written by a starter killed between create and write: judge by its age alone.
            return {"host": "?", "pid": None, "since": "?"}, age_sec
        return (holder if isinstance(holder, dict) else {"host": "?", "pid": None, "since": "?"}), age_sec

    def _why_dead(self, holder: dict[str, Any], age_sec: float) -> str | None:
        """Why the holder is gone, or None when it may be alive."""
        me = self._record or {}
        job = holder.get("slurm_job_id")
        if job and job == me.get("slurm_job_id") and _int(holder.get("slurm_restart_count")) < me["slurm_restart_count"]:
            return f"this is restart {me['slurm_restart_count']} of the same Slurm job, which ran it before its requeue"
        pid = holder.get("pid")
        if holder.get("host") == me.get("host") and isinstance(pid, int):
            if not _pid_running(pid):
                return f"pid {pid} is not running on this host"
            start = _process_start(pid)
            if holder.get("pid_start") and start and start != holder["pid_start"]:
                return f"pid {pid} is now another process"
            return None
        if age_sec > self.stale_after_sec:
            return f"no heartbeat for {age_sec:.0f} s (more than {self.stale_after_sec:.0f} s)"
        return None

    def _remove_if_unchanged(self, holder: dict[str, Any]) -> bool:
        """Remove the stale lock, unless another starter replaced it meanwhile (then keep that one)."""
        grave = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return False  # someone else removed it first
        try:
            moved = json.loads(grave.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            moved = None
        if moved != holder:
            try:  # we moved a fresh lock that replaced the stale one: put it back, never over a newer one
                os.link(grave, self.path)
            except FileExistsError:
                pass
            grave.unlink(missing_ok=True)
            return False
        grave.unlink(missing_ok=True)
        return True

    # Hold -------------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="gandist-run-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_sec):
            try:
                os.utime(self.path)
            except OSError:
                pass  # the directory went away: nothing to keep alive

    def release(self) -> None:
        """Stop the heartbeat and delete the lock file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._record is None or self._record["pid"] != os.getpid():
            return  # never acquired, or a forked child (data loader worker)
        try:
            if json.loads(self.path.read_text(encoding="utf-8")) == self._record:
                self.path.unlink()
        except (OSError, ValueError):
            pass
        self._record = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def prepare_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` or check that it is a writable directory (exit 2 naming it otherwise)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInputError(f"--run-dir {run_dir} exists and is not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInputError(f"--run-dir {run_dir}: cannot create it: {e.strerror or e}") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise BadInputError(f"--run-dir {run_dir} is not writable by this user")


def acquire_run_dir(run_dir: Path, log: Callable[[str], None] | None = None) -> RunLock:
    """``prepare_run_dir`` then take its lock; the caller releases it (``RunLock.release``)."""
    prepare_run_dir(run_dir)
    lock = RunLock(run_dir, log=log)
    try:
        lock.acquire()
    except PermissionError as e:
        raise BadInputError(f"--run-dir {run_dir} is not writable: {e}") from None
    except OSError as e:
        raise BadInputError(f"--run-dir {run_dir}: cannot create its lock file: {e}") from None
    return lock


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
