"""Round trip: what ``shards make`` / ``write_shards`` writes reads back equal, for every input kind."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gandist.config import DataConfig
from gandist.data import digits_arrays, ensure_builtin, read_all, resolve_dataset, write_shards
from gandist.data.builtin import DIGITS_SIZE, write_builtin
from gandist.data.sources import open_source
from gandist.errors import DataError


def _rand_images(n, h=6, w=6, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _write(src, out: Path, seed=None, **kw):
    return write_shards(src.keyed(seed), out, class_names=src.class_names, **kw)


def test_builtin_digits_roundtrip_bytes_and_labels(tmp_path):
    m = write_builtin("digits", tmp_path / "d", split="all", seed=0)
    assert m["num_samples"] == 1797 and m["num_classes"] == 10 and len(m["shards"]) == 8
    assert m["image"]["height"] == DIGITS_SIZE and m["image"]["channels"] == 1 and sum(m["class_counts"]) == 1797
    imgs, labels = read_all(tmp_path / "d")
    ref_imgs, ref_labels = digits_arrays("all")
    order = np.random.default_rng(0).permutation(1797)  # the writer's shuffle
    assert imgs.shape == (1797, 1, DIGITS_SIZE, DIGITS_SIZE)
    assert np.array_equal(imgs[:, 0], ref_imgs[order]) and np.array_equal(labels, ref_labels[order])
    # Same input, same bytes: shards are reproducible.
    m2 = write_builtin("digits", tmp_path / "d2", split="all", seed=0)
    assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in m2["shards"]]


def test_digits_splits_are_disjoint_stratified_and_fixed():
    tr, ytr = digits_arrays("train")
    te, yte = digits_arrays("test")
    assert len(ytr) + len(yte) == 1797 and 355 <= len(yte) <= 365
    for c in range(10):
        assert 0.17 < (yte == c).sum() / ((ytr == c).sum() + (yte == c).sum()) < 0.23
    te2, yte2 = digits_arrays("test")
    assert np.array_equal(te, te2) and np.array_equal(yte, yte2)


def test_builtin_cache_is_made_once(tmp_path):
    d = ensure_builtin("digits", str(tmp_path))
    mtime = (d / "manifest.json").stat().st_mtime_ns
    assert ensure_builtin("digits", str(tmp_path)) == d and (d / "manifest.json").stat().st_mtime_ns == mtime
    info = resolve_dataset(DataConfig(cache_dir=str(tmp_path)))
    assert info.num_samples == 1797 and info.image_size == DIGITS_SIZE and info.channels == 1 and info.class_names == list("0123456789")
    assert len(info.manifest_sha256) == 64 and info.urls == sorted(info.urls)


@pytest.mark.parametrize("fmt", ["png", "npy", "blocks"])
def test_npz_roundtrip_exact(tmp_path, fmt):
    x = _rand_images(37)
    y = np.arange(37) % 4
    np.savez(tmp_path / "a.npz", images=x, labels=y, class_names=np.array(["a", "b", "c", "d"]))
    src = open_source(tmp_path / "a.npz")
    m = _write(src, tmp_path / "s", shard_size=10, fmt=fmt, block_size=4)
    assert m["num_samples"] == 37 and m["class_names"] == ["a", "b", "c", "d"]
    assert [s["num_samples"] for s in m["shards"]] == ([10, 10, 10, 7] if fmt != "blocks" else [12, 12, 12, 1])
    imgs, labels = read_all(tmp_path / "s")
    assert np.array_equal(imgs.transpose(0, 2, 3, 1), x) and np.array_equal(labels, y)


def test_npy_pair_and_jpg_is_close(tmp_path):
    x = np.repeat(np.repeat(_rand_images(9, 4, 4, 3), 8, 1), 8, 2)  # smooth-ish 32x32 blocks for JPEG
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(9) % 3)
    src = open_source(tmp_path / "x.npy", labels_path=str(tmp_path / "y.npy"))
    _write(src, tmp_path / "s", fmt="jpg", jpg_quality=98)
    imgs, labels = read_all(tmp_path / "s")
    assert np.array_equal(labels, np.arange(9) % 3)
    assert np.abs(imgs.transpose(0, 2, 3, 1).astype(int) - x).mean() < 12  # JPEG chroma subsampling of random colours
    assert np.abs(imgs.transpose(0, 2, 3, 1).astype(int) - x[::-1]).mean() > 40  # and far from other images


def test_imagefolder_labels_modes_and_non_images(tmp_path):
    root = tmp_path / "folder"
    ref = {}
    for ci, cls in enumerate(["cat", "dog"]):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            a = _rand_images(1, 8, 8, 3, seed=10 * ci + i)[0]
            Image.fromarray(a).save(root / cls / f"{i}.png")
            ref[(ci, a.tobytes())] = True
    Image.fromarray(_rand_images(1, 8, 8, 3, 99)[0]).convert("L").save(root / "dog" / "gray.png")
    Image.fromarray(_rand_images(1, 8, 8, 4, 98)[0], mode="RGBA").save(root / "dog" / "rgba.png")
    Image.fromarray(_rand_images(1, 8, 8, 3, 97)[0]).convert("CMYK").save(root / "cat" / "cmyk.jpg")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    src = open_source(root)
    assert src.kind == "imagefolder" and src.class_names == ["cat", "dog"] and src.num_non_image == 1
    m = _write(src, tmp_path / "s", seed=3)
    assert m["num_samples"] == 9 and m["num_unreadable_skipped"] == 1 and m["class_counts"] == [4, 5]
    info = resolve_dataset(DataConfig(path=str(tmp_path / "s")))
    assert info.channels == 3
    imgs, labels = read_all(info)
    assert imgs.shape == (9, 3, 8, 8)
    found = sum((int(l), x.transpose(1, 2, 0).tobytes()) in ref for x, l in zip(imgs, labels))
    assert found == 6  # the six RGB PNGs come back bit-exact with their class
    g, _ = read_all(info, channels=1)
    assert g.shape == (9, 1, 8, 8)


def test_keep_original_format_stores_bytes(tmp_path):
    import tarfile

    (tmp_path / "flat").mkdir()
    for i in range(4):
        Image.fromarray(_rand_images(1, 5, 7, 3, i)[0]).save(tmp_path / "flat" / f"{i}.jpg", quality=90)
    src = open_source(tmp_path / "flat")
    assert src.kind == "folder" and src.class_names == []
    m = _write(src, tmp_path / "s", keep_original_format=True)
    assert m["sample_format"] == "original" and m["num_classes"] == 0 and m["image"]["height"] == 5
    with tarfile.open(tmp_path / "s" / "000000.tar") as tf:
        stored = sorted(tf.extractfile(mm).read() for mm in tf.getmembers())
    assert stored == sorted((tmp_path / "flat" / f"{i}.jpg").read_bytes() for i in range(4))
    _, labels = read_all(tmp_path / "s")
    assert (labels == -1).all()
    info = resolve_dataset(DataConfig(path=str(tmp_path / "s")))
    assert info.image_size == 5  # non-square: smallest shorter side; the loader centre-crops


def test_cifar10_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, open(d / "batches.meta", "wb"))
    rows = {}
    for name, n in [("data_batch_1", 6), ("data_batch_2", 5), ("test_batch", 4)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, n))
        rows[name] = (data, labels)
        pickle.dump({b"data": data, b"labels": labels}, open(d / name, "wb"), protocol=2)
    src = open_source(d, split="train")
    assert src.kind == "cifar" and len(src.items) == 11 and src.class_names[3] == "c3"
    _write(src, tmp_path / "s")
    imgs, labels = read_all(tmp_path / "s")
    want = np.concatenate([rows["data_batch_1"][0], rows["data_batch_2"][0]]).reshape(-1, 3, 32, 32)
    assert np.array_equal(imgs, want) and list(labels) == rows["data_batch_1"][1] + rows["data_batch_2"][1]
    assert len(open_source(d, split="test").items) == 4


def test_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        open_source(tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        open_source(tmp_path / "missing")
    np.savez(tmp_path / "f.npz", images=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(DataError, match="uint8"):
        open_source(tmp_path / "f.npz")
    mixed = [("a", np.zeros((4, 4, 3), np.uint8), None), ("b", np.zeros((6, 6, 3), np.uint8), None)]
    with pytest.raises(DataError, match="--resize"):
        write_shards(mixed, tmp_path / "blk", fmt="blocks")
    m = write_shards(mixed, tmp_path / "resized", fmt="blocks", resize=5)
    assert m["image"]["uniform"] and m["image"]["height"] == 5
    with pytest.raises(DataError, match="out of range"):
        write_shards([("a", np.zeros((4, 4), np.uint8), 3)], tmp_path / "lab", class_names=["x", "y"])


def test_write_is_resumable(tmp_path):
    x = _rand_images(25, 4, 4, 1)
    samples = [(f"{i:04d}", x[i], None) for i in range(25)]
    m = write_shards(samples, tmp_path / "s", shard_size=10)
    sha = [s["sha256"] for s in m["shards"]]
    # Simulate a crash after the first shard: drop the last shard and the manifest, keep progress.
    out = tmp_path / "s"
    import json

    (out / "manifest.json").unlink()
    (out / "000002.tar").unlink()
    lines = [json.dumps({"fingerprint": m["writer"]})]
    first = dict(m["shards"][0], source_stop=10, num_unreadable_total=0, shapes={"4x4x1": 10}, class_counts={})
    lines.append(json.dumps(first))
    (out / ".progress.jsonl").write_text("\n".join(lines) + "\n")
    (out / "000001.tar").write_bytes(b"half")  # an interrupted rename never happens, but a stale file may exist
    calls = []

    def counted():
        for s in samples:
            calls.append(s[0])
            yield s

    m2 = write_shards(counted(), out, shard_size=10)
    assert [s["sha256"] for s in m2["shards"]] == sha and m2["num_samples"] == 25
    assert calls[-1] == "0024"
    assert not (out / ".progress.jsonl").exists()
    # A complete directory: a re-run changes nothing.
    assert write_shards(samples, out, shard_size=10)["shards"] == m2["shards"]
    with pytest.raises(DataError, match="other options"):
        write_shards(samples, out, shard_size=7)
