"""Inputs ``gandist shards make --from PATH`` understands, each turned into a list of
``(key, image, label)`` items for :func:`gandist.data.writer.write_shards`:

* an ImageFolder tree ``root/<class>/*.png|jpg|jpeg|webp|bmp`` (class index = position of the folder
  name in sorted order, as torchvision's ImageFolder and Keras' flow_from_directory do);
* a flat folder of images (unlabelled);
* ``.npz`` holding ``images`` (or ``x``) N x H x W [x C] uint8 and optionally ``labels`` (or ``y``)
  and ``class_names``; or ``.npy`` images with ``--labels labels.npy``;
* CIFAR-10/100 python pickle batches (``data_batch_*``/``test_batch`` or ``train``/``test``).

Items are sorted, then shuffled with ``seed`` (so shards mix classes), then keyed ``00000000, ...``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gandist.data.writer import SourceItem
from gandist.errors import DataError

FOLDER_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".npy"}


@dataclass
class Source:
    kind: str
    items: list[tuple[Any, int | None]]  # (array or SourceItem, label)
    class_names: list[str] = field(default_factory=list)
    num_non_image: int = 0
    notes: list[str] = field(default_factory=list)

    def keyed(self, seed: int | None) -> list[tuple[str, Any, int | None]]:
        order = np.arange(len(self.items)) if seed is None else np.random.default_rng(seed).permutation(len(self.items))
        return [(f"{i:08d}", self.items[j][0], self.items[j][1]) for i, j in enumerate(order)]


def open_source(path: str | os.PathLike, *, labels_path: str = "", split: str = "all") -> Source:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"--from: not found: {p}")
    if p.is_file():
        if p.suffix == ".npz":
            return _from_npz(p)
        if p.suffix == ".npy":
            return _from_npy(p, labels_path)
        raise DataError(f"--from: {p} is a file but not .npz/.npy (give a folder of images, an .npz/.npy, or CIFAR batches)")
    if _is_cifar(p):
        return _from_cifar(p, split)
    return _from_folder(p)


def _list_images(d: Path) -> tuple[list[Path], int]:
    imgs, other = [], 0
    for f in sorted(d.rglob("*")):
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(d).parts):
            if f.suffix.lower() in FOLDER_IMAGE_EXTS:
                imgs.append(f)
            else:
                other += 1
    return imgs, other


def _from_folder(root: Path) -> Source:
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if subdirs:
        items, classes, other = [], [], 0
        for d in subdirs:
            files, n_other = _list_images(d)
            other += n_other
            if not files:
                continue
            label = len(classes)
            classes.append(d.name)
            items += [(SourceItem(str(f), label), label) for f in files]
        top = [f for f in root.iterdir() if f.is_file() and not f.name.startswith(".")]
        notes = [f"{len(top)} file(s) directly in {root} are not in a class folder and were left out"] if top else []
        if not items:
            raise DataError(f"--from: no images in the class folders of {root} ({other} non-image file(s))")
        return Source("imagefolder", items, classes, other, notes)
    files, other = _list_images(root)
    if not files:
        raise DataError(f"--from: no images in {root}" + (f" ({other} non-image file(s))" if other else " (empty folder)"))
    return Source("folder", [(SourceItem(str(f), None), None) for f in files], [], other)


def _check_images(a: np.ndarray, where: str) -> np.ndarray:
    if a.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8 (got {a.dtype}); scale to 0..255 first")
    if a.ndim not in (3, 4):
        raise DataError(f"{where}: images must be N x H x W or N x H x W x C (got shape {a.shape})")
    return a


def _labels_and_classes(labels: np.ndarray | None, n: int, names: Any, where: str) -> tuple[list, list[str]]:
    if labels is None:
        return [None] * n, []
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != n:
        raise DataError(f"{where}: {len(labels)} labels for {n} images")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise DataError(f"{where}: labels must be non-negative integers (got {labels.dtype}, min {labels.min() if labels.size else '-'})")
    k = int(labels.max()) + 1 if labels.size else 0
    classes = [str(c) for c in names] if names is not None else [str(c) for c in range(k)]
    if len(classes) < k:
        raise DataError(f"{where}: label {k - 1} but only {len(classes)} class names")
    return [int(v) for v in labels], classes


def _from_npz(p: Path) -> Source:
    z = np.load(p, allow_pickle=False)
    key = next((k for k in ("images", "x", "X") if k in z.files), None)
    if key is None:
        raise DataError(f"--from: {p} has no 'images' (or 'x') array; it has: {', '.join(z.files)}")
    imgs = _check_images(z[key], f"{p}:{key}")
    lkey = next((k for k in ("labels", "y", "Y") if k in z.files), None)
    labels, classes = _labels_and_classes(z[lkey] if lkey else None, len(imgs), z["class_names"] if "class_names" in z.files else None, str(p))
    return Source("npz", list(zip(imgs, labels)), classes)


def _from_npy(p: Path, labels_path: str) -> Source:
    imgs = _check_images(np.load(p, mmap_mode="r", allow_pickle=False), str(p))
    lab = np.load(labels_path, allow_pickle=False) if labels_path else None
    labels, classes = _labels_and_classes(lab, len(imgs), None, labels_path or str(p))
    return Source("npy", list(zip(imgs, labels)), classes)


def _is_cifar(d: Path) -> bool:
    return (d / "batches.meta").exists() or ((d / "meta").exists() and (d / "train").exists())


def _unpickle(f: Path) -> dict:
    with open(f, "rb") as fh:
        # CIFAR's batches are Python 2 pickles of dicts of numpy arrays and lists: bytes keys.
        return pickle.load(fh, encoding="bytes")


def _from_cifar(d: Path, split: str) -> Source:
    if (d / "batches.meta").exists():  # CIFAR-10
        meta = _unpickle(d / "batches.meta")
        names = [n.decode() for n in meta[b"label_names"]]
        train = sorted(d.glob("data_batch_*"))
        test = [d / "test_batch"]
        label_key = b"labels"
    else:  # CIFAR-100
        meta = _unpickle(d / "meta")
        names = [n.decode() for n in meta[b"fine_label_names"]]
        train, test = [d / "train"], [d / "test"]
        label_key = b"fine_labels"
    files = {"train": train, "test": test, "all": train + test}.get(split)
    if files is None:
        raise DataError(f"--split: unknown split {split!r} for CIFAR; allowed values: all, train, test")
    items = []
    for f in files:
        if not f.exists():
            raise DataError(f"--from: CIFAR batch file missing: {f}")
        b = _unpickle(f)
        data = np.asarray(b[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        items += [(np.ascontiguousarray(x), int(y)) for x, y in zip(data, b[label_key])]
    return Source("cifar", items, names)
