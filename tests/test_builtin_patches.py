"""The development data sets that are not the digits (gandist/data/patches.py) and the fit/val
splits every built-in set has: fixed, stratified, and never sharing a pixel across splits."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from gandist.config import DataConfig
from gandist.data import digits_arrays, read_all, resolve_dataset
from gandist.data.builtin import builtin_arrays
from gandist.data.patches import PATCH_SETS, PER_CLASS, _cell_splits, _class_patches
from gandist.errors import DataError


@pytest.mark.parametrize("name,channels,size", [("gray28", 1, 28), ("colour32", 3, 32), ("colour64", 3, 64)])
def test_patch_set_splits_have_fixed_sizes_and_every_class(name, channels, size):
    for split, per_class in [("fit", PER_CLASS["fit"]), ("val", PER_CLASS["val"]), ("test", PER_CLASS["test"]),
                             ("train", PER_CLASS["fit"] + PER_CLASS["val"])]:
        x, y, classes = builtin_arrays(name, split)
        assert x.shape == (10 * per_class, channels, size, size) and x.dtype == np.uint8
        assert np.bincount(y).tolist() == [per_class] * 10 and len(classes) == 10
        assert x.std() > 10  # real images, not a blank canvas
    fit, _, _ = builtin_arrays(name, "fit")
    val, _, _ = builtin_arrays(name, "val")
    train, _, _ = builtin_arrays(name, "train")
    by_class = lambda a, n: a.reshape(10, n, *a.shape[1:])  # noqa: E731
    assert np.array_equal(by_class(train, 400), np.concatenate([by_class(fit, 350), by_class(val, 50)], axis=1))


def test_patch_sets_are_the_same_on_every_call():
    a, ya, _ = builtin_arrays("gray28", "test")
    _class_patches.cache_clear()  # cut them again from the source images
    b, yb, _ = builtin_arrays("gray28", "test")
    assert np.array_equal(a, b) and np.array_equal(ya, yb)


def test_cells_of_one_image_go_to_exactly_one_split():
    parts = _cell_splits(36, np.random.default_rng(0))
    cells = np.concatenate(list(parts.values()))
    assert sorted(cells.tolist()) == list(range(36))
    assert len(parts["test"]) == 7 and len(parts["val"]) == 4


@pytest.mark.parametrize("name", list(PATCH_SETS))
def test_no_test_or_val_patch_appears_in_fit(name):
    digest = lambda a: {hashlib.sha1(x.tobytes()).hexdigest() for x in a}  # noqa: E731
    fit = digest(builtin_arrays(name, "fit")[0])
    assert not digest(builtin_arrays(name, "test")[0]) & fit
    assert not digest(builtin_arrays(name, "val")[0]) & fit


def test_digits_fit_and_val_partition_train_and_leave_test_alone():
    train, ytrain = digits_arrays("train")
    fit, yfit = digits_arrays("fit")
    val, yval = digits_arrays("val")
    assert len(fit) + len(val) == len(train) == 1438
    for c in range(10):
        assert 0.09 < (yval == c).sum() / (ytrain == c).sum() < 0.16
    key = lambda a, y: sorted(hashlib.sha1(x.tobytes() + bytes([int(l)])).hexdigest() for x, l in zip(a, y))  # noqa: E731
    assert key(np.concatenate([fit, val]), np.concatenate([yfit, yval])) == key(train, ytrain)


def test_shards_make_writes_a_patch_set_with_its_class_names(tmp_path):
    out = tmp_path / "val"
    subprocess.run([sys.executable, "-m", "gandist", "shards", "make", "--builtin", "colour32", "--split", "val",
                    "--out", str(out), "--no-progress"], check=True, capture_output=True)
    info = resolve_dataset(DataConfig(path=str(out)))
    assert info.num_samples == 500 and info.image_size == 32 and info.channels == 3
    assert info.class_names == PATCH_SETS["colour32"].class_names
    imgs, labels = read_all(out)
    ref, ref_labels, _ = builtin_arrays("colour32", "val")
    order = np.argsort([hashlib.sha1(x.tobytes()).hexdigest() for x in ref])
    got = np.argsort([hashlib.sha1(x.tobytes()).hexdigest() for x in imgs])
    assert np.array_equal(imgs[got], ref[order]) and np.array_equal(labels[got], ref_labels[order])


def test_training_on_a_patch_set_needs_only_its_name(tmp_path):
    info = resolve_dataset(DataConfig(builtin="gray28", cache_dir=str(tmp_path)))
    assert info.num_samples == 5000 and info.image_size == 28 and info.class_names[:3] == ["brick", "grass", "gravel"]


def test_unknown_split_names_the_flag():
    with pytest.raises(DataError, match="--split"):
        builtin_arrays("gray28", "validation")
