"""The built-in datasets: scikit-learn's 8x8 handwritten digits (1,797 real images, 10 classes,
shipped inside the scikit-learn package, so no download anywhere), the default; and the patch
sets of :mod:`gandist.data.patches` (gray28, colour32, colour64), development data that no
setting was tuned on.

Stored at 16x16 grayscale: values 0..16 are scaled to 0..255 and upscaled with PIL bicubic.
16 because the information is 8x8 either way, 16 is the smallest power of two that leaves a
DCGAN two upsampling stages (4 -> 8 -> 16), and every training step costs about a quarter of
what it would at 32x32: the default run trains on 2 CPU cores in minutes, and the whole
train -> synth -> classify path fits the CPU budget. Users who want 32x32 set data.image_size=32.

Splits are deterministic: ``test`` holds a fixed 20% of each class (seeded permutation),
``train`` the other 80%, ``all`` everything. ``train`` is cut once more into ``fit`` (7/8) and
``val`` (1/8, with its own seed, so ``train`` and ``test`` stay what they always were): choices
(steps, recipe, thresholds) are made by training on ``fit`` and measuring on ``val``, and
``test`` is read once, for the report. Training with no ``data.path`` uses ``all`` (a GAN
has no use for held-out data); the classifier-gain experiment trains its GAN on ``train`` and
measures on ``test``, which the GAN never saw.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gandist.data.manifest import MANIFEST_NAME, read_manifest
from gandist.data.slices import Slice
from gandist.errors import DataError

from gandist.data.patches import PATCH_SETS, patch_arrays

BUILTINS = ("digits", *PATCH_SETS)
SPLITS = ("all", "train", "test", "fit", "val")
DIGITS_SIZE = 16
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 20240607  # fixed forever: changing it would leak test images into train
DIGITS_VAL_FRACTION = 1 / 8  # of each class's train images
DIGITS_VAL_SEED = 20261206  # fixed forever, like the test seed
DIGITS_NUM_SHARDS = 8  # 2 ranks x 4 workers can each own a shard
# Bump when the stored bytes change, so caches of the old version are not reused.
DIGITS_VERSION = 2
PATCHES_VERSION = 1


def digits_arrays(split: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 16, 16) uint8 and labels (N,) int64 of the digits ``split``, in sklearn order."""
    if split not in SPLITS:
        raise DataError(f"--split: unknown split {split!r}; allowed values: {', '.join(SPLITS)}")
    from sklearn.datasets import load_digits

    d = load_digits()
    small = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # (1797, 8, 8)
    big = np.stack([np.asarray(Image.fromarray(x, mode="L").resize((DIGITS_SIZE, DIGITS_SIZE), Image.BICUBIC)) for x in small])
    labels = d.target.astype(np.int64)
    idx = np.arange(len(labels))
    if split != "all":
        test = _per_class_pick(labels, np.ones(len(labels), dtype=bool), DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
        if split in ("fit", "val"):
            val = _per_class_pick(labels, ~test, DIGITS_VAL_FRACTION, DIGITS_VAL_SEED)
            idx = idx[val] if split == "val" else idx[~test & ~val]
        else:
            idx = idx[test] if split == "test" else idx[~test]
    return big[idx], labels[idx]


def _per_class_pick(labels: np.ndarray, among: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mask of a seeded ``fraction`` of each class's images within the mask ``among``."""
    rng = np.random.default_rng(seed)
    picked = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        members = np.flatnonzero((labels == c) & among)
        picked[rng.permutation(members)[: int(round(len(members) * fraction))]] = True
    return picked


def builtin_arrays(name: str, split: str = "all") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, C, H, W) uint8, labels (N,) int64 and class names of built-in ``name``."""
    if name == "digits":
        imgs, labels = digits_arrays(split)
        return imgs[:, None], labels, [str(c) for c in range(10)]
    if name in PATCH_SETS:
        imgs, labels = patch_arrays(name, split)
        return imgs, labels, PATCH_SETS[name].class_names
    raise DataError(f"--builtin: unknown built-in dataset {name!r}; allowed values: {', '.join(BUILTINS)}")


def write_builtin(name: str, out_dir: str | os.PathLike, *, split: str = "all", fmt: str = "png",
                  seed: int = 0, num_shards: int = DIGITS_NUM_SHARDS, progress: bool = False,
                  command: str = "", data_slice: "Slice | None" = None) -> dict[str, Any]:
    """Write the built-in dataset ``name`` as shards (shuffled with ``seed`` so every shard mixes
    all classes) and return the manifest. ``data_slice``: write only that slice of the shuffled
    order (keys and shard size stay those of the whole set)."""
    from gandist.data.writer import write_shards

    imgs, labels, class_names = builtin_arrays(name, split)
    # The writer takes H x W (gray) or H x W x C images.
    imgs = imgs[:, 0] if imgs.shape[1] == 1 else imgs.transpose(0, 2, 3, 1)
    order = np.random.default_rng(seed).permutation(len(labels))
    shard_size = -(-len(labels) // num_shards)
    extra: dict[str, Any] = {"builtin": name, "split": split, "seed": seed, "builtin_version": DIGITS_VERSION if name == "digits" else PATCHES_VERSION}
    start, stop = 0, len(order)
    if data_slice is not None:
        start, stop = data_slice.bounds(len(order))
        extra["slice"] = data_slice.record(len(order))
    samples = ((f"{i:06d}", imgs[order[i]], int(labels[order[i]])) for i in range(start, stop))
    return write_shards(
        samples, out_dir, class_names=class_names, shard_size=shard_size, fmt=fmt,
        block_size=min(256, shard_size), progress=progress, num_samples_hint=stop - start, command=command,
        extra=extra,
    )


def default_cache_dir(cache_dir: str = "") -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("GANDIST_CACHE"):
        return Path(os.environ["GANDIST_CACHE"]).expanduser()
    return Path.home() / ".cache" / "gandist"


def ensure_builtin(name: str, cache_dir: str = "", split: str = "all") -> Path:
    """Directory of the built-in shards, made on first use. Safe when several ranks race: each
    writes into its own temporary directory and renames it into place; the loser's rename fails
    (the target exists) and it deletes its copy and uses the winner's."""
    root = default_cache_dir(cache_dir)
    target = root / f"{name}-{split}-v{DIGITS_VERSION if name == 'digits' else PATCHES_VERSION}"
    if (target / MANIFEST_NAME).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        write_builtin(name, tmp, split=split, command=f"gandist shards make --builtin {name} --split {split} (cache)")
        try:
            os.rename(tmp, target)
            print(f"gandist: wrote the built-in {name} dataset ({split}) to {target}", file=sys.stderr)
        except OSError:
            if not (target / MANIFEST_NAME).is_file():
                raise DataError(f"could not create the built-in dataset cache at {target}: it exists but has no {MANIFEST_NAME}; delete it") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    read_manifest(target / MANIFEST_NAME)
    return target
