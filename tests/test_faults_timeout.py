"""A hung collective fails after ``engine.timeout_minutes`` instead of hanging forever."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from faults_helpers import REPO, env, exit_codes

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
    m = __import__("re").search(r"rank 0: collective failed after ([\d.]+) s", out)
    assert m, out[-3000:]
    assert 2.0 <= float(m.group(1)) < 60, out[-3000:]  # the 3 s timeout, not the default 30 min
    assert exit_codes(out).get(0) == 7
    assert elapsed < 110
