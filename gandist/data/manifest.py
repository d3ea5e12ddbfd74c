"""``manifest.json``: what a shard directory holds. Written by ``shards make``, checked by
``shards verify``, read by the loader (sample counts per shard make exact epoch splits possible).

Layout (``format: gandist-shards/1``)::

    {"format": "gandist-shards/1", "sample_format": "png" | "jpg" | "npy" | "blocks" | "original",
     "num_samples": 1797, "num_classes": 10, "class_names": ["0", ...], "class_counts": [178, ...],
     "image": {"height": 32, "width": 32, "channels": 1, "uniform": true,
               "min_height": 32, "max_height": 32, "min_width": 32, "max_width": 32, "channel_counts": {"1": 1797}},
     "block_size": 256,            # blocks only: images per tar member (the last of a shard may be short)
     "shards": [{"name": "000000.tar", "num_samples": 225, "sha256": "...", "num_bytes": 123456}, ...],
     "command": "gandist shards make --builtin digits --out d", "created": "2026-...", "seed": 0, ...}
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from gandist.errors import DataError
from gandist.fileio import atomic_write_text

MANIFEST_NAME = "manifest.json"
FORMAT = "gandist-shards/1"
SAMPLE_FORMATS = ("png", "jpg", "npy", "blocks", "original")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest at ``path``, checked (DataError naming the file and field otherwise).

    A manifest is data from wherever the shards came from: its shard names must stay inside its
    own directory, and its counts must add up, or the loader would read outside the data set or
    silently read only part of it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"manifest not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read manifest {path}: {e.strerror or e}") from None
    try:
        m = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"manifest {path} is not JSON text (binary data?)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"manifest {path} is not valid JSON: {e}") from None
    check_manifest(m, path)
    return m


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_manifest(m: Any, path: str | os.PathLike) -> None:
    """Raise DataError naming ``path`` and the field when ``m`` is not a usable shard manifest."""
    if not isinstance(m, dict):
        raise DataError(f"manifest {path} must be a JSON object, got {type(m).__name__}")
    for key in ("num_samples", "shards"):
        if key not in m:
            raise DataError(f"manifest {path} has no {key!r} field (not written by gandist shards make?)")
    if not _count(m["num_samples"]):
        raise DataError(f"manifest {path}: num_samples must be a non-negative integer (got {m['num_samples']!r:.50})")
    if not isinstance(m["shards"], list):
        raise DataError(f"manifest {path}: shards must be a list")
    names = set()
    for i, entry in enumerate(m["shards"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise DataError(f"manifest {path}: shards[{i}] has no file name ('name')")
        name = entry["name"]
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")) or "\\" in name or ".." in parts or ":" in name:
            raise DataError(f"manifest {path}: shard name {name!r:.200} points outside the data set's directory")
        if name in names:
            raise DataError(f"manifest {path}: shard {name!r} is listed twice")
        names.add(name)
        if not _count(entry.get("num_samples")):
            raise DataError(f"manifest {path}: shard {name}: num_samples must be a non-negative integer (got {entry.get('num_samples')!r:.50})")
        if "sha256" in entry and not isinstance(entry["sha256"], str):
            raise DataError(f"manifest {path}: shard {name}: sha256 must be a string")
        if "num_bytes" in entry and not _count(entry["num_bytes"]):
            raise DataError(f"manifest {path}: shard {name}: num_bytes must be a non-negative integer")
        if "class_counts" in entry and not isinstance(entry["class_counts"], (dict, list)):
            raise DataError(f"manifest {path}: shard {name}: class_counts must be an object or a list")
    total = sum(e["num_samples"] for e in m["shards"])
    if total != m["num_samples"]:
        raise DataError(f"manifest {path}: num_samples is {m['num_samples']} but its shards' counts add up to {total}")
    for key in ("num_classes", "block_size"):
        if key in m and not _count(m[key]):
            raise DataError(f"manifest {path}: {key} must be a non-negative integer (got {m[key]!r:.50})")
    if "class_names" in m and not (isinstance(m["class_names"], list) and all(isinstance(n, str) for n in m["class_names"])):
        raise DataError(f"manifest {path}: class_names must be a list of strings")
    if m.get("sample_format", "png") not in SAMPLE_FORMATS:
        raise DataError(f"manifest {path}: sample_format must be one of {', '.join(SAMPLE_FORMATS)} (got {m.get('sample_format')!r:.50})")
    if m.get("sample_format") == "blocks" and not (isinstance(m.get("block_size"), int) and m["block_size"] >= 1):
        raise DataError(f"manifest {path}: block shards need block_size >= 1")
    image = m.get("image", {})
    if not isinstance(image, dict):
        raise DataError(f"manifest {path}: image must be an object")
    for key in ("height", "width", "channels", "min_height", "max_height", "min_width", "max_width"):
        if key in image and not _count(image[key]):
            raise DataError(f"manifest {path}: image.{key} must be a non-negative integer (got {image[key]!r:.50})")
    if "uniform" in image and not isinstance(image["uniform"], bool):
        raise DataError(f"manifest {path}: image.uniform must be true or false")
    counts = image.get("channel_counts")
    if counts is not None and not (isinstance(counts, dict) and all(k in ("1", "2", "3", "4") and _count(v) for k, v in counts.items())):
        raise DataError(f"manifest {path}: image.channel_counts must map channel counts (\"1\", \"3\", ...) to image counts")
    if "class_counts" in m and not isinstance(m["class_counts"], (dict, list)):
        raise DataError(f"manifest {path}: class_counts must be an object or a list")


def write_manifest(out_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write atomically: a reader never sees a half-written manifest, and after a crash the
    manifest is either the old one or the complete new one (fsync before the rename)."""
    path = Path(out_dir) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")
    return path


def image_stats(shape_counts: dict[tuple[int, int, int], int]) -> dict[str, Any]:
    """Summary of a tally {(H, W, C): number of images}."""
    if not shape_counts:
        return {"height": 0, "width": 0, "channels": 0, "uniform": True}
    shapes = list(shape_counts)
    chans: dict[str, int] = {}
    for (_, _, c), n in shape_counts.items():
        chans[str(c)] = chans.get(str(c), 0) + n
    uniform = len(shapes) == 1
    hs = [s[0] for s in shapes]
    ws = [s[1] for s in shapes]
    return {
        "height": hs[0] if uniform else min(hs),
        "width": ws[0] if uniform else min(ws),
        "channels": int(max(chans, key=lambda k: chans[k])),
        "uniform": uniform,
        "min_height": min(hs),
        "max_height": max(hs),
        "min_width": min(ws),
        "max_width": max(ws),
        "channel_counts": chans,
    }


def shape_key(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))


def parse_shape_key(key: str) -> tuple[int, int, int]:
    h, w, c = (int(v) for v in key.split("x"))
    return h, w, c


def dataset_image_size(m: dict[str, Any]) -> int:
    """Side of the square images the loader yields by default: the stored side for uniform square
    images, else the smallest shorter side (the loader centre-crops and resizes, never upsamples
    the smallest image)."""
    im = m.get("image", {})
    if im.get("uniform") and im.get("height") == im.get("width"):
        return int(im["height"])
    return int(min(im.get("min_height", 0), im.get("min_width", 0)))


def dataset_channels(m: dict[str, Any]) -> int:
    """1 when every image is grayscale, else 3 (RGBA and CMYK inputs become RGB)."""
    chans = m.get("image", {}).get("channel_counts") or {str(m.get("image", {}).get("channels", 3)): 1}
    return 1 if set(chans) == {"1"} else 3
