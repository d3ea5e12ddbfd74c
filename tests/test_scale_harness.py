"""benchmarks/scale.py end to end at a small size: JPEG shards made in parallel slices and
merged, one epoch streamed on 2 ranks with loader workers, every key read exactly once, and
the figures it reports are there. Its index code must survive the JPEG codec."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, gandist_env

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from scale import key_of, make_images  # noqa: E402


def test_index_blocks_survive_jpeg():
    imgs, labels = make_images(40, 2**24 - 40)  # the largest indices: every bit used
    assert sorted(set(labels.tolist())) == list(range(10))
    for i, img in enumerate(imgs):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=75)
        back = np.asarray(Image.open(buf)).transpose(2, 0, 1)[None]
        assert key_of(back)[0] == 2**24 - 40 + i


@pytest.mark.slow
def test_scale_harness_every_key_once_on_2_ranks(tmp_path):
    out = tmp_path / "scale.json"
    res = subprocess.run([sys.executable, "benchmarks/scale.py", "--num-images", "3000", "--work", str(tmp_path / "w"),
                          "--cores", "2", "--ranks", "2", "--workers", "2", "--batch", "64", "--shard-size", "500",
                          "--out", str(out)], cwd=REPO_ROOT, env=gandist_env(), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r = json.loads(out.read_text())
    epoch = r["epoch"]
    assert epoch["exactly_once"] and epoch["keys_read"] == 3000 // 128 * 128 == epoch["keys_expected"]
    assert all(rank["num_worker_processes"] == 2 and rank["worker_rss_mb"] > 0 and rank["first_batch_s"] > 0
               for rank in epoch["ranks"])
    assert r["make"]["one_core_images_per_s"] > 0 and r["make"]["parallel_efficiency"] > 0
    assert isinstance(r["make"]["startup_taken_off"], bool)  # False: the run was too short to net out start-up
    assert "every key once: True" in res.stdout
