"""slurm/train_multi_node.sbatch and slurm/make_shards.sbatch on two real Slurm nodes: the
two-node cluster that scripts/slurm_multinode_up.sh builds from Linux namespaces on this machine
(hosts node1 and node2 at their own addresses, one controller on the head namespace). Each test
submits from the head, as a user submits from a login node; /tmp is the shared filesystem.

Without the cluster these tests skip; under CI=true they fail (scripts/test.sh starts it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MULTINODE_ON, multinode_problem, skip_unless_ci
from faults_helpers import (
    NUM_STEPS,
    REPO,
    TINY,
    assert_same_weights,
    env,
    latest_step,
    reference_run,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm_multinode]
MULTINODE_DIR = Path(os.environ.get("GANDIST_MN_DIR", "/tmp/gandist-mn"))
FINISHED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


@pytest.fixture(autouse=True)
def _cluster():
    problem = multinode_problem()
    if problem:
        skip_unless_ci(problem)


def on(*cmd: str, node: str = "head", timeout: float = 60, **extra_env: str) -> subprocess.CompletedProcess:
    """Run ``cmd`` on a node of the cluster (default: the head, where jobs are submitted)."""
    prefix = ["bash", str(MULTINODE_ON)] + (["-n", node] if node != "head" else [])
    return subprocess.run([*prefix, *cmd], cwd=REPO, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)


def submit(*args: str) -> str:
    proc = on("sbatch", "--parsable", "--time=10", "--export=ALL", *args,
              GANDIST_PYTHON=sys.executable, GANDIST_PROCS_PER_NODE="1", OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def job_field(job: str, name: str) -> str:
    m = re.search(rf"\b{name}=(\S+)", on("scontrol", "show", "job", job).stdout)
    return m.group(1) if m else ""


def node_states() -> dict[str, str]:
    out = on("sinfo", "-h", "-N", "-o", "%N %T").stdout
    return dict(line.split()[:2] for line in out.splitlines() if line.strip())


def train_job(run_dir: Path, log: Path, *overrides: str) -> str:
    """``sbatch -N2 slurm/train_multi_node.sbatch``: 2 nodes x 1 CPU process (gloo) each."""
    # --cpus-per-task=1: the nodes have 2 CPUs each (the script asks for 8 by default).
    return submit("-N2", "--cpus-per-task=1", f"--output={log}", str(REPO / "slurm" / "train_multi_node.sbatch"),
                  "--run-dir", str(run_dir), *TINY, *overrides)


def wait_until_finished(job: str, log: Path, restarts: int = 1) -> str:
    wait_for(lambda: job_field(job, "Restarts") == str(restarts), 180, f"job {job} to be requeued")
    wait_for(lambda: job_field(job, "JobState") in FINISHED, 300, f"the requeued job {job} to finish")
    text = log.read_text()
    assert job_field(job, "JobState") == "COMPLETED", text[-5000:]
    return text


def test_the_nodes_are_two_hosts_and_the_host_is_untouched():
    hosts = on("srun", "-N2", "hostname")
    assert hosts.returncode == 0, hosts.stderr
    assert sorted(hosts.stdout.split()) == ["node1", "node2"]
    addresses = {node: on("hostname", "-i", node=node).stdout.strip() for node in ("node1", "node2")}
    assert addresses["node1"] != addresses["node2"]
    # Those addresses exist only inside the cluster's namespaces, not on this machine's interfaces.
    host_addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert all(a not in host_addrs for a in addresses.values()), host_addrs
    # The host's own Slurm (scripts/slurm_up.sh), when it runs, still sees only its own node.
    host_sinfo = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True)
    if host_sinfo.returncode == 0:
        assert "node1" not in host_sinfo.stdout.split() and "node2" not in host_sinfo.stdout.split()


def test_two_nodes_preempted_requeued_and_equal_to_one_node_with_two_processes(tmp_path_factory):
    reference = reference_run(tmp_path_factory.getbasetemp())  # 2 processes on one host (shared with test_slurm_jobs)
    work = tmp_path_factory.mktemp("mn-train")
    run_dir, log = work / "run", work / "job.out"
    job = train_job(run_dir, log, f"train.steps={NUM_STEPS}")
    try:
        wait_for(lambda: log.exists() and f"-> {NUM_STEPS}" in log.read_text(), 240, "both nodes to train")
        # The preemption notice as Slurm sends it: to the batch shell on the first node only.
        assert on("scancel", "--signal=USR1", "--batch", job).returncode == 0
        text = wait_until_finished(job, log)
    finally:
        on("scancel", job)

    assert "2 nodes x 1 processes, master node1:" in text
    assert text.count("ranks on 2 hosts: node1 (rank 0), node2 (rank 1)") == 2  # first run and the requeued one
    # srun passed the notice to both nodes' launchers, and each rank got it.
    assert "rank 0 on node1 received SIGUSR1" in text and "rank 1 on node2 received SIGUSR1" in text
    saved = re.search(r"preemption signal: saved \S+/(step_\d{8}) at step (\d+); exiting with code 3", text)
    assert saved, text[-5000:]
    step = int(saved.group(2))
    assert 0 < step < NUM_STEPS
    # Both ranks wrote their part of that checkpoint (each from its own host) into the shared run directory.
    ckpt = run_dir / "ckpt" / saved.group(1)
    if ckpt.exists():  # pruned by checkpoint.keep once later ones were saved; then the final one shows it
        assert sorted(p.name for p in (ckpt / "rank").iterdir()) == ["00000.pt", "00001.pt"]
    final = run_dir / "ckpt" / (run_dir / "ckpt" / "latest").read_text().strip()
    assert sorted(p.name for p in (final / "rank").iterdir()) == ["00000.pt", "00001.pt"]
    assert f"requeued Slurm job {job}" in text
    assert f"job {job} (restart 1)" in text  # SLURM_RESTART_COUNT of the second run
    assert f"resuming from {ckpt} at step {step} of {NUM_STEPS}" in text
    assert latest_step(run_dir) == NUM_STEPS
    assert_same_weights(run_dir, reference)
    # The losses after the resume are those of the one-node run, step for step.
    def losses(d: Path) -> dict[int, tuple]:
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines() if line.strip()]
        return {r["step"]: (r["loss/D"], r["loss/G"]) for r in rows if r["step"] > step + 40}
    assert losses(run_dir) and losses(run_dir) == losses(reference)


def test_a_lost_node_is_named_the_checkpoint_stays_good_and_the_requeue_finishes(tmp_path):
    steps = 600  # long enough that node2 dies mid-run, after the checkpoint at step 100
    run_dir, log = tmp_path / "run", tmp_path / "job.out"
    job = train_job(run_dir, log, f"train.steps={steps}", "engine.timeout_minutes=2")
    try:
        wait_for(lambda: (run_dir / "ckpt" / "step_00000100" / "MANIFEST.json").exists(), 240, "the checkpoint at step 100")
        # node2 crashes: every process on it dies at once, its slurmd included.
        on("kill", "-KILL", "-1", node="node2")
        lost_at = time.monotonic()
        wait_for(lambda: "lost rank 1" in log.read_text(), 120, "rank 0 to report the lost rank")
        reported_after = time.monotonic() - lost_at
        # The controller declares node2 down after SlurmdTimeout and requeues the --requeue job.
        wait_for(lambda: node_states().get("node2", "").startswith("down"), 120, "node2 to be declared down")
        wait_for(lambda: job_field(job, "Restarts") == "1", 60, "the job to be requeued after the node failure")
        good = sorted((run_dir / "ckpt").glob("step_*"))
        text = log.read_text()
        # node2 reboots: its slurmd registers again and the requeued job gets both nodes back.
        # The job is held meanwhile: srun's kill of the lost run's step could not reach node2,
        # and the controller resends it about a minute later to the step of the same id, which
        # would then be the requeued run's. A real cluster never sees that (a requeued job waits
        # cred_expire, 120 s by default, and a node takes minutes to reboot); this one waits 10 s.
        assert on("scontrol", "hold", job).returncode == 0
        node2_log = MULTINODE_DIR / "ns" / "node2" / "log" / "slurmd.log"
        seen = len(node2_log.read_text()) if node2_log.exists() else 0
        assert on("/usr/sbin/slurmd", node="node2").returncode == 0
        # slurmd logs it either way: "failed to get job_uid for job N" (no such step) or "sending signal".
        stale_kill = re.compile(rf"_rpc_signal_tasks: (failed to get job_uid for job {job}|sending signal \d+ to StepId={job}\.0)\b")
        try:
            wait_for(lambda: stale_kill.search(node2_log.read_text()[seen:]), 150, "the resent kill of the lost step")
        except AssertionError:
            pass  # a Slurm that drops the undelivered kill instead: nothing is left to wait for
        assert on("scontrol", "release", job).returncode == 0
        wait_for(lambda: job_field(job, "JobState") in FINISHED, 300, "the requeued job to finish")
    finally:
        on("scancel", job)
        if not node_states().get("node2", "").startswith(("idle", "mixed", "alloc")):
            on("/usr/sbin/slurmd", node="node2")  # leave the cluster usable for the next test
    full = log.read_text()
    assert job_field(job, "JobState") == "COMPLETED", full[-5000:]

    lost = re.search(r"gandist train: error: rank 0 \(host node1, pid \d+\): lost rank 1 \(host node2, pid \d+\): (.*?)\. "
                     r"The newest checkpoint, (\S+) \(step (\d+)\), is kept", text)
    assert lost, text[-5000:]
    assert reported_after < 120  # the socket error, well within engine.timeout_minutes=2
    kept_step = int(lost.group(3))
    assert kept_step >= 100 and Path(lost.group(2)) in good
    assert "NODE FAILURE" in text or "Node failure on node2" in text
    assert f"job {job} (restart 1)" in full
    assert f"resuming from {lost.group(2)} at step {kept_step} of {steps}" in full  # the checkpoint rank 0 named
    assert latest_step(run_dir) == steps and f"done: {steps} steps." in full


def test_make_shards_job_array_runs_one_slice_on_each_node(tmp_path):
    out, logs = tmp_path / "digits", tmp_path / "logs"
    logs.mkdir()
    # --cpus-per-task=2 fills a node (2 CPUs each), so the two tasks run at once on both nodes.
    job = submit("--array=0-1", "--cpus-per-task=2", f"--output={logs}/task-%a-%N.out",
                 str(REPO / "slurm" / "make_shards.sbatch"), "--builtin", "digits", "--out", str(out), "--no-progress")
    try:
        def states() -> dict[str, str]:
            text = on("squeue", "-h", "-t", "all", "-r", "-j", job, "-o", "%i %T").stdout
            return dict(line.split() for line in text.splitlines() if line.strip())
        wait_for(lambda: len(states()) == 2 and all(s in FINISHED for s in states().values()), 300, f"job array {job}")
    finally:
        on("scancel", job)
    text = "".join(p.read_text() for p in sorted(logs.glob("task-*.out")))
    assert set(states().values()) == {"COMPLETED"}, text
    assert sorted(p.name.split("-")[2].removesuffix(".out") for p in logs.glob("task-*.out")) == ["node1", "node2"]
    assert "merged 2 part(s)" in text and "1797 samples in" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert [p["slice"] for p in manifest["merged_from"]] == ["0/2", "1/2"]
    assert sum(s["num_samples"] for s in manifest["shards"]) == 1797


def test_down_leaves_nothing_and_up_takes_under_a_minute():
    """Last in this file: it restarts the cluster (scripts/test.sh stops it after the suite)."""
    root = MULTINODE_DIR
    if os.geteuid() != 0:
        skip_unless_ci("starting and stopping the cluster needs root")
    down = subprocess.run(["bash", str(REPO / "scripts" / "slurm_multinode_down.sh")], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    left = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    assert f"{root}/bin/gandist-nsinit" not in left
    assert not (root / "pids").exists() and not (root / "ns").exists()
    t0 = time.monotonic()
    up = subprocess.run(["bash", str(REPO / "scripts" / "slurm_multinode_up.sh")], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert up.returncode == 0, up.stderr
    assert took < 60, up.stderr
    assert multinode_problem() is None
