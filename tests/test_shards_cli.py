"""``gandist shards make|verify|inspect`` end to end, through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def gandist(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "gandist", "shards", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    x = np.random.default_rng(0).integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    np.savez(d / "a.npz", images=x, labels=np.arange(30) % 3)
    r = gandist("make", "--from", str(d / "a.npz"), "--out", str(d / "s"), "--shard-size", "8", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "wrote 30 samples in 4 shard(s)" in r.stdout
    return d / "s"


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_verify_ok_then_flipped_byte_then_missing_shard(shards, tmp_path):
    r = gandist("verify", str(shards))
    assert r.returncode == 0 and "verified 4 shard(s), 30 samples" in r.stdout and "OK" in r.stdout

    d = _copy(shards, tmp_path / "flip")
    path = d / "000001.tar"
    with tarfile.open(path) as tf:
        member = [m for m in tf.getmembers() if m.name.endswith(".png")][2]
    data = bytearray(path.read_bytes())
    data[member.offset_data + 40] ^= 0xFF  # inside the PNG's compressed data: CRC fails on decode
    path.write_bytes(bytes(data))
    r = gandist("verify", str(d))
    assert r.returncode == 2
    assert "shard 000001.tar: sha256" in r.stdout
    key = member.name.split(".")[0]
    assert f"shard 000001.tar: key {key}:" in r.stdout

    d = _copy(shards, tmp_path / "missing")
    (d / "000003.tar").unlink()
    r = gandist("verify", str(d))
    assert r.returncode == 2 and "shard 000003.tar: missing file" in r.stdout


@pytest.mark.slow
def test_inspect_prints_histogram_and_writes_grid(shards, tmp_path):
    grid = tmp_path / "g.png"
    r = gandist("inspect", str(shards), "--grid", str(grid), "--n", "9")
    assert r.returncode == 0, r.stderr
    assert "30 samples in 4 shard(s)" in r.stdout and "3 classes" in r.stdout
    from PIL import Image

    w, h = Image.open(grid).size
    assert w == h and w >= 3 * 8 * 8  # 3 x 3 cells of 8 px images, upscaled so a cell is >= 64 px
    r = gandist("inspect", str(shards), "--grid", str(grid), "--json")
    info = json.loads(r.stdout)
    assert info["class_counts"] == [10, 10, 10] and info["shard_sizes"] == [8, 8, 8, 6]


@pytest.mark.slow
def test_make_builtin_split_and_bad_input(tmp_path):
    r = gandist("make", "--builtin", "digits", "--split", "test", "--out", str(tmp_path / "t"), "--format", "blocks", "--no-progress")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["split"] == "test" and m["sample_format"] == "blocks" and 355 <= m["num_samples"] <= 365
    assert "--split test" in m["command"]
    (tmp_path / "empty").mkdir()
    r = gandist("make", "--from", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "empty folder" in r.stderr
    r = gandist("verify", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "manifest not found" in r.stderr
