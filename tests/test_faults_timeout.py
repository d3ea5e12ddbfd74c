"""A hung collective fails after ``engine.timeout_minutes`` instead of hanging forever, and a
collective that fails because a rank died names the rank it lost."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from faults_helpers import (
    REPO,
    TINY,
    env,
    exit_codes,
    launch_cmd,
    wait_for,
    worker_pids,
)

from gandist.checkpoint import verify_checkpoint

pytestmark = pytest.mark.slow

HANG = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    from gandist.config import load_config
    from gandist.engine import build_engine

    cfg = load_config(overrides=["engine.timeout_minutes=0.05"]).validate(world_size=2)  # 3 s
    engine = build_engine(cfg, Path(sys.argv[1]))
    engine.barrier()  # both ranks are up
    if engine.rank == 1:
        time.sleep(120)  # a rank stuck outside the collective (a dead node, a hung loader)
    t0 = time.monotonic()
    try:
        engine.reduce_sum(torch.ones(1))
    except Exception as e:
        print(f"rank {engine.rank}: collective failed after {time.monotonic() - t0:.1f} s: {type(e).__name__}: {e}",
              flush=True)
        sys.exit(7)
    print("collective returned", flush=True)
    """
)


def test_hung_collective_times_out_after_engine_timeout_minutes(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(HANG)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
           "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(script), str(tmp_path)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=110)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert "collective returned" not in out
    m = re.search(r"rank 0: collective failed after ([\d.]+) s", out)
    assert m, out[-3000:]
    assert 2.0 <= float(m.group(1)) < 60, out[-3000:]  # the 3 s timeout, not the default 30 min
    assert exit_codes(out).get(0) == 7
    assert elapsed < 110


def test_a_killed_rank_is_named_by_the_rank_that_lost_it(tmp_path):
    """SIGKILL to rank 1 mid-run (a crashed process or node): rank 0's next collective fails, and
    it exits 1 naming rank 1 (its host and pid) and the checkpoint a rerun resumes from."""
    run_dir = tmp_path / "run"
    log = tmp_path / "launcher.log"
    # monitor_interval 30 s: torchrun must not SIGTERM rank 0 before rank 0 notices by itself.
    cmd = launch_cmd(run_dir, 2, [*TINY, "train.steps=100000", "engine.timeout_minutes=2"], monitor_interval_sec=30)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: (run_dir / "ckpt" / "step_00000050" / "MANIFEST.json").exists(), 240, "the first checkpoint")
            pids = wait_for(lambda: (p := worker_pids(proc.pid)) and len(p) == 2 and p, 30, "two workers")
            os.kill(pids[1], signal.SIGKILL)
            proc.wait(timeout=120)
        finally:
            proc.kill()
    output = log.read_text()
    lost = re.search(rf"rank 0 \(host {re.escape(socket.gethostname())}, pid {pids[0]}\): "
                     rf"lost rank 1 \(host {re.escape(socket.gethostname())}, pid {pids[1]}\): .*?(reset|closed) by peer", output)
    assert lost, output[-3000:]
    kept = re.search(r"The newest checkpoint, (\S+) \(step (\d+)\), is kept: the same command resumes from it", output)
    assert kept and int(kept.group(2)) >= 50 and verify_checkpoint(Path(kept.group(1))) is None, output[-3000:]
    assert exit_codes(output).get(0) == 1, output[-3000:]
