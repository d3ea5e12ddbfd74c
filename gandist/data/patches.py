"""Development image sets that are not the digits: class-labelled patches cut from the real
photographs and textures that scikit-image and scikit-learn ship inside their packages (no
download anywhere).

Each set has ten classes, one per source image: a sample is a square patch of that image, and
the class is the image it came from. Telling a patch of brick wall from one of gravel, or a
patch of the astronaut photo from one of the coffee cup, is a real recognition problem with
real image statistics (texture, edges, colour), unlike the procedural sets tests use; and no
setting of gandist was ever tuned on these images.

How a set is cut, so that no split can leak into another:
- each source image is resized so that its shorter side is ``side_factor`` x the patch size;
- the resized image is tiled into square cells of 2 x the patch size, and a seeded shuffle
  assigns each cell to one split (20 % ``test``, 10 % ``val``, the rest ``fit``);
- a patch lies entirely inside one cell, at a seeded random offset. Patches of different splits
  therefore never share a pixel; patches of one split may overlap, as random crops do.

``train`` is ``fit`` + ``val``: a GAN or classifier is trained on ``fit``, every choice is made
on ``val``, and ``test`` is read once, for the report.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from gandist.errors import DataError

# Samples per class in each split (train = fit + val).
PER_CLASS = {"fit": 350, "val": 50, "test": 100}
CELL_SPLIT_FRACTIONS = {"test": 0.2, "val": 0.1}  # of each image's cells; fit gets the rest
PATCH_SEED = 20261206  # fixed forever: changing it moves patches between splits


@dataclass(frozen=True)
class PatchSet:
    name: str
    description: str
    patch_size: int
    channels: int
    side_factor: int
    sources: tuple[tuple[str, str, str], ...]  # (class name, package, file inside the package's data folder)

    @property
    def class_names(self) -> list[str]:
        return [s[0] for s in self.sources]


_SKIMAGE_GRAY = (
    ("brick", "skimage", "brick.png"), ("grass", "skimage", "grass.png"), ("gravel", "skimage", "gravel.png"),
    ("camera", "skimage", "camera.png"), ("coins", "skimage", "coins.png"), ("moon", "skimage", "moon.png"),
    ("page", "skimage", "page.png"), ("text", "skimage", "text.png"), ("cell", "skimage", "cell.png"),
    ("clock", "skimage", "clock_motion.png"),
)
_COLOUR = (
    ("astronaut", "skimage", "astronaut.png"), ("cat", "skimage", "chelsea.png"), ("coffee", "skimage", "coffee.png"),
    ("hubble", "skimage", "hubble_deep_field.jpg"), ("ihc", "skimage", "ihc.png"), ("retina", "skimage", "retina.jpg"),
    ("rocket", "skimage", "rocket.jpg"), ("motorcycle", "skimage", "motorcycle_left.png"),
    ("china", "sklearn", "china.jpg"), ("flower", "sklearn", "flower.jpg"),
)

PATCH_SETS = {
    s.name: s
    for s in (
        PatchSet("gray28", "28x28 gray patches of 10 scikit-image photographs and textures (brick, grass, gravel, camera, ...)",
                 28, 1, 12, _SKIMAGE_GRAY),
        PatchSet("colour32", "32x32 colour patches of 10 photographs shipped by scikit-image and scikit-learn (astronaut, cat, coffee, ...)",
                 32, 3, 12, _COLOUR),
        PatchSet("colour64", "64x64 colour patches of the same 10 photographs as colour32", 64, 3, 8, _COLOUR),
    )
}


def _package_data_dir(package: str) -> Path:
    try:
        if package == "skimage":
            import skimage

            return Path(skimage.__file__).parent / "data"
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images"
    except ImportError:
        pip_name = {"skimage": "scikit-image", "sklearn": "scikit-learn"}[package]
        raise DataError(f"--builtin: the patch data sets read images that {pip_name} ships; install it: pip install {pip_name}") from None


def _load_source(package: str, filename: str, channels: int, shorter_side: int) -> np.ndarray:
    path = _package_data_dir(package) / filename
    if not path.is_file():
        raise DataError(f"--builtin: {path} is missing from the installed {package} (a trimmed install?); reinstall it")
    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        w, h = im.size
        scale = shorter_side / min(w, h)
        im = im.resize((max(shorter_side, round(w * scale)), max(shorter_side, round(h * scale))), Image.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)  # C x H x W


def _cell_splits(num_cells: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    order = rng.permutation(num_cells)
    n_test = max(1, round(num_cells * CELL_SPLIT_FRACTIONS["test"]))
    n_val = max(1, round(num_cells * CELL_SPLIT_FRACTIONS["val"]))
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "fit": order[n_test + n_val:]}


@lru_cache(maxsize=8)
def _class_patches(set_name: str, class_index: int, split: str) -> np.ndarray:
    spec = PATCH_SETS[set_name]
    name, package, filename = spec.sources[class_index]
    p = spec.patch_size
    img = _load_source(package, filename, spec.channels, spec.side_factor * p)
    cell = 2 * p
    rows, cols = img.shape[1] // cell, img.shape[2] // cell
    # One generator per (set, class): the cell assignment is the same for every split asked.
    rng = np.random.default_rng([PATCH_SEED, zlib.crc32(f"{set_name}/{name}".encode())])
    cells = _cell_splits(rows * cols, rng)[split]
    pick = np.random.default_rng([PATCH_SEED, zlib.crc32(f"{set_name}/{name}/{split}".encode())])
    n = PER_CLASS[split]
    chosen = pick.choice(cells, n, replace=True)
    dy, dx = pick.integers(0, cell - p + 1, size=(2, n))
    out = np.empty((n, spec.channels, p, p), dtype=np.uint8)
    for i, (c, y, x) in enumerate(zip(chosen, dy, dx)):
        top, left = (c // cols) * cell + y, (c % cols) * cell + x
        out[i] = img[:, top:top + p, left:left + p]
    return out


def patch_arrays(set_name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, C, P, P) uint8 and labels (N,) int64 of ``split`` of patch set ``set_name``,
    class by class. ``split``: fit, val, test, train (fit + val) or all."""
    if set_name not in PATCH_SETS:
        raise DataError(f"--builtin: unknown patch set {set_name!r}; allowed values: {', '.join(PATCH_SETS)}")
    parts = {"fit": ["fit"], "val": ["val"], "test": ["test"], "train": ["fit", "val"], "all": ["fit", "val", "test"]}
    if split not in parts:
        raise DataError(f"--split: unknown split {split!r}; allowed values: {', '.join(parts)}")
    images, labels = [], []
    for c in range(len(PATCH_SETS[set_name].sources)):
        for s in parts[split]:
            x = _class_patches(set_name, c, s)
            images.append(x)
            labels.append(np.full(len(x), c, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)
