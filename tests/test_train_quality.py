"""The quality features in the real loop: DiffAugment/ADA, lazy R1, LeCam, orthogonal
regularization and a relativistic loss resume bit for bit; dcgan trains on 28x28 and 48x48 data
at their own size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_train import TINY, assert_states_equal, load

QUALITY = [
    "augment.policy=color,translation,cutout", "augment.ada_target=0.1", "augment.ada_interval=1", "augment.ada_kimg=0.1",
    "reg.r1_gamma=1", "reg.every_steps=2", "reg.lecam_weight=0.1", "reg.ortho_weight=1e-4", "loss.name=rpgan",
]


@pytest.mark.slow
def test_resume_with_augmentation_and_penalties_is_bitwise(run, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run("train", "--run-dir", straight, "train.steps=6", *TINY, *QUALITY).returncode == 0
    assert run("train", "--run-dir", resumed, "train.steps=3", *TINY, *QUALITY).returncode == 0
    second = run("train", "--run-dir", resumed, "train.steps=6", *TINY, *QUALITY)
    assert second.returncode == 0, second.stderr
    for name in ("model.pt", "optim.pt", "trainer.pt"):
        a = load(straight / "ckpt" / "step_00000006" / name)
        b = load(resumed / "ckpt" / "step_00000006" / name)
        assert_states_equal(a, b, name)
    components = load(straight / "ckpt" / "step_00000006" / "trainer.pt")["components"]
    assert components["augment"]["ada"]["p"] > 0  # ADA moved p, and the checkpoint kept it
    assert components["reg"]["lecam"]["num_updates"] == 6
    logged = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert all("augment/p" in row and "reg/lecam" in row and "reg/ortho" in row for row in logged)
    assert any(row.get("reg/r1", 0) > 0 for row in logged)


@pytest.mark.slow
@pytest.mark.parametrize("size, channels", [(28, 1), (48, 3)])
def test_dcgan_trains_at_the_datas_own_size(run, tmp_path, size, channels):
    rng = np.random.default_rng(0)
    shape = (40, size, size) if channels == 1 else (40, size, size, channels)
    np.savez(tmp_path / "imgs.npz", images=rng.integers(0, 256, shape, dtype=np.uint8), labels=np.arange(40) % 4)
    made = run("shards", "make", "--from", tmp_path / "imgs.npz", "--out", tmp_path / "data")
    assert made.returncode == 0, made.stderr
    result = run("train", "--run-dir", tmp_path / "run", f"data.path={tmp_path / 'data'}", "train.steps=2", *TINY)
    assert result.returncode == 0, result.stderr
    spec = json.loads((tmp_path / "run" / "ckpt" / "step_00000002" / "model.json").read_text())["spec"]
    assert (spec["image_size"], spec["channels"]) == (size, channels)


@pytest.mark.slow
def test_synth_writes_the_datas_size_and_classify_tells_about_resizing(run, tmp_path):
    """A run that resized 28x28 data to 32 writes 28x28 synthetic images; classify converts
    images of another size to the real training size and says so."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "imgs.npz", images=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), labels=np.arange(40) % 4)
    assert run("shards", "make", "--from", tmp_path / "imgs.npz", "--out", tmp_path / "data").returncode == 0
    assert run("shards", "make", "--from", tmp_path / "imgs.npz", "--resize", "32", "--out", tmp_path / "data32").returncode == 0
    trained = run("train", "--run-dir", tmp_path / "run", f"data.path={tmp_path / 'data'}", "data.image_size=32", "train.steps=2", *TINY)
    assert trained.returncode == 0, trained.stderr
    synth = run("synth", "--run-dir", tmp_path / "run", "--per-class", 3, "--out", tmp_path / "synth")
    assert synth.returncode == 0, synth.stderr
    image = json.loads((tmp_path / "synth" / "manifest.json").read_text())["image"]
    assert (image["height"], image["width"]) == (28, 28)
    assert "writing 28x28" in synth.stderr

    out = run("classify", "--train", tmp_path / "data", "--test", tmp_path / "data", "--synthetic", tmp_path / "data32",
              "--protocol", "cas", "--seeds", 1, "--steps", 2, "--out", tmp_path / "report")
    assert out.returncode == 0, out.stderr
    assert "notice: --synthetic" in out.stderr and "1 x 32 x 32" in out.stderr and "resized to 1 x 28 x 28" in out.stderr
    assert "notice: --test" not in out.stderr
