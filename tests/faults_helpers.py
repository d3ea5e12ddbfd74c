"""Helpers for the fault-tolerance and Slurm tests: launch real multi-process `gandist train`
runs and compare their final weights."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

# A run small enough for 2 CPU processes on 2 cores, long enough (in steps) that a signal sent
# once it has started lands mid-training.
NUM_STEPS = 120
TINY = [
    "model.name=mlp", "model.g_width=8", "model.d_width=8", "model.z_dim=8",
    "train.batch_size=16", "train.seed=3", "train.ema_start_step=0",
    "checkpoint.every_steps=50", "checkpoint.keep=2", "log.every_steps=40", "log.progress=false",
    "log.sample_every_steps=0", "log.num_grid_images=10",
]


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["GANDIST_CACHE"] = e.get("GANDIST_CACHE", str(Path.home() / ".cache" / "gandist"))
    e.update(extra)
    return e


def launch_cmd(run_dir: Path, num_procs: int, overrides: list[str], monitor_interval_sec: float = 0.1) -> list[str]:
    """``accelerate launch`` of ``gandist train``. A worker that exits non-zero (3 after a
    preemption checkpoint) makes torchrun SIGTERM the others as soon as its monitor, polling
    every ``monitor_interval_sec``, sees it; a longer interval lets every rank exit by itself."""
    if num_procs == 1:  # accelerate refuses --multi_gpu for one process; no launcher needed
        return [sys.executable, "-m", "gandist", "train", "--run-dir", str(run_dir), *overrides]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
            "--num_processes", str(num_procs), "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", "0", "--monitor_interval", str(monitor_interval_sec),
            "-m", "gandist", "train", "--run-dir", str(run_dir), *overrides]


def train(run_dir: Path, num_procs: int, overrides: list[str] = (), timeout: float = 300,
          monitor_interval_sec: float = 0.1) -> subprocess.CompletedProcess:
    flags = [o for o in overrides if o.startswith("--")]  # before the key=value list: argparse wants them there
    rest = [o for o in overrides if not o.startswith("--")]
    cmd = launch_cmd(run_dir, num_procs, [*flags, *TINY, *rest], monitor_interval_sec)
    return subprocess.run(cmd, cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def reference_run(base: Path) -> Path:
    """The uninterrupted 2-process run every interrupted one is compared with (made once per session)."""
    run_dir = base / "faults-reference"
    if not (run_dir / "ckpt" / "latest").exists() or latest_step(run_dir) != NUM_STEPS:
        shutil.rmtree(run_dir, ignore_errors=True)
        proc = train(run_dir, 2, [f"train.steps={NUM_STEPS}"])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


def exit_codes(launcher_output: str) -> dict[int, int]:
    """{rank: exit code} from torchrun's failure report."""
    found = re.findall(r"rank\s*:\s*(\d+) \(local_rank.*?\n\s*exitcode\s*:\s*(-?\d+)", launcher_output)
    return {int(rank): int(code) for rank, code in found}


def latest_step(run_dir: Path) -> int:
    return int((run_dir / "ckpt" / "latest").read_text().strip().split("_")[1])


def final_weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    name = (run_dir / "ckpt" / "latest").read_text().strip()
    return torch.load(run_dir / "ckpt" / name / "model.pt", map_location="cpu", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    for net in ("G", "D", "G_ema"):
        assert wa[net].keys() == wb[net].keys()
        for key in wa[net]:
            assert torch.equal(wa[net][key], wb[net][key]), f"{net}.{key} differs between {a} and {b}"


def worker_pids(launcher_pid: int) -> dict[int, int]:
    """{rank: pid} of the training processes below a launcher (they run in their own sessions)."""
    found: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = int(re.search(r"^PPid:\s*(\d+)", status.read_text(), re.M).group(1))
            environ = (status.parent / "environ").read_bytes().split(b"\0")
        except (OSError, AttributeError):
            continue
        if ppid != launcher_pid:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(status.parent.name)
    return found


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# Slurm jobs (tests/test_slurm_jobs.py, tests/test_run_lock.py) --------------------------------


def submit_job(args: list[str], extra_env: dict[str, str] | None = None) -> str:
    """``sbatch --parsable ARGS`` from the repository; returns the job id."""
    submit = subprocess.run(["sbatch", "--parsable", *args], cwd=REPO, env=env(**(extra_env or {})), capture_output=True, text=True)
    assert submit.returncode == 0, submit.stderr
    return submit.stdout.strip().split(";")[0]


def job_field(job_id: str, name: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    m = re.search(rf"\b{name}=(\S+)", out)
    return m.group(1) if m else ""


def wait_for_requeued_job(job: str, log: Path) -> str:
    """Wait until ``job`` has requeued itself once and then completed; returns its output log."""
    wait_for(lambda: job_field(job, "Restarts") == "1", 120, "the job to requeue itself")
    wait_for(lambda: job_field(job, "JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), 300,
             "the requeued job to finish")
    text = log.read_text()
    assert job_field(job, "JobState") == "COMPLETED", text[-4000:]
    return text
