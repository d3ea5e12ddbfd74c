"""The zero engine through the real CLI on 2 CPU processes: ``launch/run.sh --procs 2`` (accelerate
launch with launch/cpu_2proc.yaml), resume under ``torchrun -m gandist train``, and sampling from
a ZeRO checkpoint without DeepSpeed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_ARGS = ["engine.kind=zero", "engine.zero_stage=2", "train.mixed_precision=bf16", "train.steps=4",
              "train.batch_size=16", "model.g_width=8", "model.d_width=8", "checkpoint.every_steps=2",
              "log.every_steps=2", "log.sample_every_steps=0", "log.progress=false", "log.num_grid_images=10"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
    return env


def _train(run_dir: Path, launcher: str) -> subprocess.CompletedProcess:
    args = ["--run-dir", str(run_dir), *TRAIN_ARGS]
    if launcher == "run.sh":  # accelerate launch --config_file launch/cpu_2proc.yaml
        cmd = ["bash", str(REPO_ROOT / "launch" / "run.sh"), "--procs", "2", *args]
    else:
        from engine_worker import free_port

        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(free_port()), "-m", "gandist", "train", *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"train failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _model(run_dir: Path, step: int) -> dict:
    return torch.load(run_dir / "ckpt" / f"step_{step:08d}" / "model.pt", weights_only=True)


@pytest.mark.slow
def test_zero_cli_two_processes_resume_and_sample(tmp_path, gandist_cache):
    a = tmp_path / "a"
    proc = _train(a, "run.sh")
    out = proc.stdout + proc.stderr
    # Rank zero alone prints the start line, naming world size and batches.
    assert out.count("engine zero, world size 2") == 1, out[-3000:]
    assert "batch 8 per rank x 2 ranks x 1 accum = 16 global" in out
    ds = json.loads((a / "deepspeed_G.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2 and ds["train_micro_batch_size_per_gpu"] == 8
    sharded = a / "ckpt" / "step_00000004" / "sharded"
    assert json.loads((sharded / "zero_meta.json").read_text())["world_size"] == 2
    for net in ("G", "D"):  # one optimizer shard per rank, per network
        assert len(list((sharded / net / "zero").glob("*optim_states.pt"))) == 2

    # Interrupted after step 2: drop the step-4 checkpoint and run again, this time under torchrun.
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(b / "ckpt" / "step_00000004")
    proc = _train(b, "torchrun")
    assert "resuming from" in proc.stdout + proc.stderr
    full_a, full_b = _model(a, 4), _model(b, 4)
    for key in ("G", "D", "G_ema"):
        for name, t in full_a[key].items():
            assert torch.equal(t, full_b[key][name]), f"{key}.{name} differs after resume"
    # The weights are the fp32 masters (not bf16 copies) and moved from step 2.
    assert all(t.dtype == torch.float32 for t in full_a["G"].values() if t.is_floating_point())
    before = _model(a, 2)["G"]
    assert any(not torch.equal(t, before[k]) for k, t in full_a["G"].items())

    # Sampling reads only model.pt: no DeepSpeed engine needed.
    grid = tmp_path / "grid.png"
    proc = subprocess.run([sys.executable, "-m", "gandist", "sample", "--run-dir", str(a), "--n", "10", "--out", str(grid)],
                          cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert grid.stat().st_size > 0
