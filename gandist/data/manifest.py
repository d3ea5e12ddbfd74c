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
from pathlib import Path
from typing import Any

from gandist.errors import DataError
from gandist.fileio import atomic_write_text

MANIFEST_NAME = "manifest.json"
FORMAT = "gandist-shards/1"


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"manifest not found: {path}") from None
    try:
        m = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"manifest {path} is not valid JSON: {e}") from None
    for key in ("num_samples", "shards"):
        if key not in m:
            raise DataError(f"manifest {path} has no {key!r} field (not written by gandist shards make?)")
    return m


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
