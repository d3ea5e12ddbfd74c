"""A ZeRO checkpoint is data, never code: pickles planted in DeepSpeed's own files (with the
manifest re-signed, as anyone who can write the files can do) never run on resume, neither
through DeepSpeed's loader nor through the universal-checkpoint conversion."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faults_helpers import env
from hostile import checkpoint_files, plant_pickle, resign_manifest

REPO = Path(__file__).resolve().parents[1]
ZERO_TINY = ["engine.kind=zero", "engine.zero_stage=2", "train.batch_size=8", "model.g_width=8", "model.d_width=8",
             "checkpoint.every_steps=2", "log.every_steps=2", "log.sample_every_steps=0", "log.progress=false",
             "log.num_grid_images=10"]


def _train(run_dir: Path, steps: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gandist", "train", "--run-dir", str(run_dir), f"train.steps={steps}", *ZERO_TINY],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def zero_run(tmp_path_factory, gandist_cache) -> Path:
    """A one-process ZeRO-2 run with checkpoints at steps 2 and 4."""
    run_dir = tmp_path_factory.mktemp("zero") / "run"
    proc = _train(run_dir, 4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize("under", ["model_states", "optim_states", "sharded/", ""])
def test_planted_pickles_in_a_zero_checkpoint_never_run(zero_run, tmp_path, under):
    run_dir = tmp_path / "run"
    shutil.copytree(zero_run, run_dir)
    ckpt = run_dir / "ckpt" / "step_00000004"
    marker = tmp_path / "code_ran"
    if under.endswith("_states"):  # one kind of DeepSpeed file only, so that the loader reaches that kind
        targets = [p for p in checkpoint_files(ckpt, "sharded/") if under in p.name]
    else:  # every DeepSpeed file, or every file of the checkpoint
        targets = checkpoint_files(ckpt, under)
    assert targets, f"no files under {under!r} in {ckpt}"
    for path in targets:
        plant_pickle(path, marker)
    resign_manifest(ckpt)

    proc = _train(run_dir, 6)
    out = proc.stdout + proc.stderr
    assert not marker.exists(), "code from a planted pickle ran"
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "step_00000004" in out and ("only tensors and plain data" in out or "cannot load checkpoint file" in out), out[-2000:]


def test_universal_conversion_loads_weights_only(zero_run, tmp_path):
    """The world-size change path converts the shards in a subprocess: it too must not unpickle code."""
    ckpt = tmp_path / "step"
    shutil.copytree(zero_run / "ckpt" / "step_00000004", ckpt)
    marker = tmp_path / "code_ran"
    for path in checkpoint_files(ckpt, "sharded/G/"):
        plant_pickle(path, marker)
    proc = subprocess.run([sys.executable, "-m", "gandist.engine.ds_universal",
                           "--input_folder", str(ckpt / "sharded" / "G" / "zero"), "--output_folder", str(tmp_path / "out"),
                           "--num_extract_workers", "1", "--num_merge_workers", "1"],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert not marker.exists(), "code from a planted pickle ran during the universal conversion"
    assert proc.returncode != 0
    assert "Weights only load failed" in proc.stderr or "Unsupported global" in proc.stderr, proc.stderr[-2000:]


def test_good_zero_checkpoint_still_resumes(zero_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(zero_run, run_dir)
    proc = _train(run_dir, 6)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout + proc.stderr
    assert (run_dir / "ckpt" / "step_00000006" / "MANIFEST.json").is_file()
    assert torch.load(run_dir / "ckpt" / "step_00000006" / "trainer.pt", weights_only=True)["step"] == 6
