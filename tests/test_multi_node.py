"""Multi-process runs checked for real: each rank reads its own slice of the data and draws its
own noise (recorded in a 2-process CLI run), and a run over two launchers with machine ranks 0 and
1 (launch/run.sh with launch/multi_node.yaml, 127.0.0.1 rendezvous, one CPU process each) ends
with exactly the weights of a single 2-process run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from data_helpers import write_uneven
from engine_worker import free_port
from faults_helpers import REPO, TINY, assert_same_weights, env

pytestmark = pytest.mark.slow
RUN = [*TINY, "train.steps=6", "checkpoint.every_steps=3", "log.every_steps=3"]


def _launch_env(**extra: str) -> dict[str, str]:
    return env(PYTHON=sys.executable, OMP_NUM_THREADS="1", **extra)


def test_each_rank_reads_its_own_slice_and_draws_its_own_noise(tmp_path):
    data = write_uneven(tmp_path / "d", [10, 7, 9, 6])  # 32 indexed images: 2 ranks x 2 steps x batch 8 per rank
    out = tmp_path / "record"
    steps = 2
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(REPO / "tests" / "record_worker.py"), str(out), "--run-dir", str(tmp_path / "run"), *TINY,
           f"data.path={data}", "data.shuffle_buffer=0", "model.name=mlp", f"train.steps={steps}", "train.batch_size=16"]
    proc = subprocess.run(cmd, cwd=REPO, env=_launch_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    seen = [r["images"] for r in ranks]
    assert [len(s) for s in seen] == [steps * 8, steps * 8]  # one batch of 8 per step on each rank
    assert not set(seen[0]) & set(seen[1]), "two ranks read the same samples"
    assert sorted(seen[0] + seen[1]) == list(range(32)), "the ranks together did not read exactly one epoch"
    # Noise: D and G phases each draw once per step; every rank draws other numbers.
    noise = [r["noise"] for r in ranks]
    assert len(noise[0]) == len(noise[1]) >= 2 * steps
    assert all(a != b for a, b in zip(noise[0], noise[1])), "two ranks drew the same noise"


def test_two_launchers_with_machine_ranks_equal_one_two_process_run(tmp_path, gandist_cache):
    single = tmp_path / "single"
    proc = subprocess.run(["bash", str(REPO / "launch" / "run.sh"), "--procs", "2", "--run-dir", str(single), *RUN],
                          cwd=REPO, env=_launch_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    multi = tmp_path / "multi"
    port = str(free_port())
    nodes = []
    for node in (1, 0):
        node_env = _launch_env(SLURM_NNODES="2", SLURM_JOB_NODELIST="127.0.0.1", SLURM_NODEID=str(node), MASTER_PORT=port)
        log = open(tmp_path / f"node{node}.log", "w")
        nodes.append(subprocess.Popen(["bash", str(REPO / "launch" / "run.sh"), "--procs", "1", "--run-dir", str(multi), *RUN],
                                      cwd=REPO, env=node_env, stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=300) for p in nodes]
    logs = {n: (tmp_path / f"node{n}.log").read_text() for n in (0, 1)}
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    # The launchers really were two machines of one job: rank 0 on machine 0 saw world size 2.
    assert "world size 2" in logs[0] and "batch 8 per rank x 2 ranks" in logs[0]
    assert "world size 2" not in logs[1]  # only rank 0 prints the start line
    assert_same_weights(multi, single)
