"""slurm/train_single_node.sbatch against a real Slurm controller (the machine's one-node
cluster, started by scripts/slurm_up.sh in CI): a 2-process CPU training job gets the
preemption notice, checkpoints, requeues itself, resumes, and ends with the same weights as
an uninterrupted run."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from faults_helpers import (
    NUM_STEPS, REPO, TINY, assert_same_weights, latest_step, reference_run, submit_job, wait_for, wait_for_requeued_job,
)
from conftest import require_slurm

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture(autouse=True)
def _slurm():
    require_slurm()  # skips without a controller; under CI=true fails instead


def test_usr1_checkpoints_requeues_and_resumes_to_the_uninterrupted_result(tmp_path_factory):
    reference = reference_run(tmp_path_factory.getbasetemp())
    work = tmp_path_factory.mktemp("slurm-job")
    run_dir, log = work / "run", work / "job.out"
    job = submit_job([f"--output={log}", "--time=10", "--export=ALL", str(REPO / "slurm" / "train_single_node.sbatch"),
                      "--run-dir", str(run_dir), *TINY, f"train.steps={NUM_STEPS}"],
                     {"GANDIST_PYTHON": sys.executable, "GANDIST_PROCS_PER_NODE": "2"})
    try:
        # Wait until both ranks train (rank 0 prints the start line after the collective setup,
        # by which time every rank has its handler), then send the notice as Slurm would.
        wait_for(lambda: log.exists() and f"-> {NUM_STEPS}" in log.read_text(), 240, "the job's training to start")
        subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
        text = wait_for_requeued_job(job, log)
    finally:
        subprocess.run(["scancel", job], capture_output=True)

    assert "batch shell got SIGUSR1" in text and "received SIGUSR1" in text
    saved = re.search(r"preemption signal: saved \S+step_(\d{8}) at step (\d+); exiting with code 3", text)
    assert saved, text[-4000:]
    step = int(saved.group(2))
    assert 0 < step < NUM_STEPS
    assert f"requeued Slurm job {job}" in text
    assert f"job {job} (restart 1)" in text  # the second run of the same job id, same command
    assert f"at step {step} of {NUM_STEPS}" in text  # ... resumed from the preemption checkpoint
    assert latest_step(run_dir) == NUM_STEPS
    assert_same_weights(run_dir, reference)
