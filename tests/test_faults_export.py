"""`gandist export`: the EMA generator of a run as safetensors plus its model config, read back
by `gandist sample --generator`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from faults_helpers import REPO, env, final_weights, reference_run

pytestmark = pytest.mark.slow


def gandist(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gandist", *args], cwd=REPO, env=env(), capture_output=True,
                          text=True, timeout=120)


def test_export_writes_ema_weights_and_config_that_sample_reads(tmp_path_factory, tmp_path):
    run_dir = reference_run(tmp_path_factory.getbasetemp())
    out = tmp_path / "g.safetensors"
    proc = gandist("export", "--run-dir", str(run_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    exported = load_file(str(out))
    weights = final_weights(run_dir)
    ema, g = weights["G_ema"], weights["G"]
    assert exported.keys() == ema.keys()
    assert all(torch.equal(exported[k], ema[k]) for k in ema)  # the EMA weights, not G's ...
    # ... which is a real distinction only if they differ: then an export of G would fail here.
    assert any(not torch.equal(ema[k], g[k]) for k in ema if ema[k].is_floating_point())
    assert not all(torch.equal(exported[k], g[k]) for k in g)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model_name"] == "mlp" and meta["spec"]["z_dim"] == 8 and meta["num_classes"] == 10

    grid = tmp_path / "grid.png"
    proc = gandist("sample", "--generator", str(out), "--n", "10", "--out", str(grid))
    assert proc.returncode == 0, proc.stderr
    assert grid.stat().st_size > 100


def test_export_errors_name_the_problem(tmp_path):
    proc = gandist("export", "--run-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "g.safetensors"))
    assert proc.returncode == 2 and "missing" in proc.stderr
    proc = gandist("export", "--run-dir", str(tmp_path), "--out", str(tmp_path / "g.pt"))
    assert proc.returncode == 2 and "must end in .safetensors" in proc.stderr
