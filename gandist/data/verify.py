"""``shards verify`` (every shard against its manifest) and ``shards inspect`` (counts, class
histogram, preview grid)."""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gandist.data import images as im
from gandist.data.manifest import MANIFEST_NAME, read_manifest
from gandist.fileio import sha256_file
from gandist.data.reader import RawBlock, RawSample, _members, check_block_labels, decode_sample
from gandist.errors import DataError

MAX_PROBLEMS_PER_SHARD = 20


def verify_shard(path: str, entry: dict[str, Any], sample_format: str, block_size: int, num_classes: int) -> dict[str, Any]:
    """Check one shard: file present, sha256, sample count, every image decodes, labels in range."""
    name = entry["name"]
    problems: list[str] = []
    result = {"name": name, "problems": problems, "num_samples": 0, "class_counts": {}}
    if not os.path.exists(path):
        problems.append(f"shard {name}: missing file {path}")
        return result
    digest = sha256_file(path)
    if digest != entry.get("sha256"):
        problems.append(f"shard {name}: sha256 {digest[:16]}... differs from the manifest's {str(entry.get('sha256'))[:16]}... (file changed or damaged)")
    counts: dict[int, int] = {}
    seen: set[str] = set()
    n = 0

    def bad(key: str, why: str) -> None:
        if len(problems) < MAX_PROBLEMS_PER_SHARD:
            problems.append(f"shard {name}: key {key}: {why}")

    def check(key: str, members: dict[str, bytes]) -> int:
        if key in seen:
            bad(key, "duplicate key")
        seen.add(key)
        if sample_format == "blocks":
            try:
                imgs = np.load(io.BytesIO(members["imgs.npy"]), allow_pickle=False)
                labels = np.load(io.BytesIO(members["labels.npy"]), allow_pickle=False) if "labels.npy" in members else None
                if imgs.ndim != 4 or imgs.dtype != np.uint8:
                    raise ValueError(f"imgs.npy has shape {imgs.shape} {imgs.dtype}, expected uint8 NHWC")
            except Exception as e:  # noqa: BLE001
                bad(key, f"block does not decode: {type(e).__name__}: {e}")
                return 0
            err = check_block_labels(RawBlock(path, key, imgs, labels, len(imgs)), num_classes)
            if err:
                bad(key, err)
            elif labels is not None:
                for v, c in zip(*np.unique(labels, return_counts=True)):
                    counts[int(v)] = counts.get(int(v), 0) + int(c)
            return len(imgs)
        try:
            _, label = decode_sample(RawSample(path, key, members), num_classes)
            if label >= 0:
                counts[label] = counts.get(label, 0) + 1
        except ValueError as e:
            bad(key, str(e))
        return 1

    cur_key, cur = None, {}
    try:
        for key, ext, data in _members(path, None):
            if key != cur_key:
                if cur_key is not None:
                    n += check(cur_key, cur)
                cur_key, cur = key, {}
            cur[ext] = data
        if cur_key is not None:
            n += check(cur_key, cur)
    except Exception as e:  # noqa: BLE001 - truncated or not a tar
        problems.append(f"shard {name}: unreadable tar after key {cur_key}: {type(e).__name__}: {e}")
    if n != entry.get("num_samples"):
        problems.append(f"shard {name}: holds {n} samples, the manifest says {entry.get('num_samples')}")
    result["num_samples"] = n
    result["class_counts"] = counts
    return result


def verify_dir(root: str | os.PathLike, workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """Verify every shard listed in ``root/manifest.json``; returns a summary with ``problems``.
    ``progress``: a bar (or plain lines off a terminal) counting verified samples, with ETA."""
    from gandist.progress import progress_bar

    root = Path(root)
    m = read_manifest(root / MANIFEST_NAME)
    t0 = time.perf_counter()
    args = [(str(root / s["name"]), s, m.get("sample_format", "png"), int(m.get("block_size", 0)), int(m.get("num_classes", 0)))
            for s in m["shards"]]
    from gandist.runtime import cpus_available

    workers = workers or min(len(args), cpus_available())
    results = []
    with progress_bar(int(m.get("num_samples", 0)) or None, "shards verify", unit="img", enabled=progress) as bar:
        if workers > 1 and len(args) > 1:
            with ProcessPoolExecutor(workers) as ex:
                for r in ex.map(verify_shard, *zip(*args)):
                    results.append(r)
                    bar.update(r["num_samples"])
        else:
            for a in args:
                results.append(verify_shard(*a))
                bar.update(results[-1]["num_samples"])
    problems = [p for r in results for p in r["problems"]]
    total = sum(r["num_samples"] for r in results)
    if total != m["num_samples"] and not problems:
        problems.append(f"manifest: num_samples is {m['num_samples']} but the shards hold {total}")
    listed = {s["name"] for s in m["shards"]}
    extra = sorted(p.name for p in root.glob("*.tar") if p.name not in listed)
    return {
        "root": str(root), "num_shards": len(results), "num_samples": total, "problems": problems,
        "unlisted_shards": extra, "seconds": time.perf_counter() - t0,
    }


def inspect_dir(root: str | os.PathLike, grid_path: str | os.PathLike | None = None, num_grid: int = 64) -> dict[str, Any]:
    """Counts, class histogram and image statistics from the manifest, plus a preview grid PNG of
    the first ``num_grid`` samples."""
    from gandist.data.dataset import info_from_dir, read_all  # noqa: F401

    root = Path(root)
    m = read_manifest(root / MANIFEST_NAME)
    info = info_from_dir(root)
    out: dict[str, Any] = {
        "root": str(root),
        "num_samples": m["num_samples"],
        "num_shards": len(m["shards"]),
        "sample_format": m.get("sample_format"),
        "shard_sizes": [s["num_samples"] for s in m["shards"]],
        "class_names": m.get("class_names", []),
        "class_counts": m.get("class_counts", []),
        "image": m.get("image", {}),
        "num_bytes": sum(s.get("num_bytes", 0) for s in m["shards"]),
        "command": m.get("command", ""),
    }
    if grid_path:
        imgs = _first_images(info, num_grid)
        save_grid(imgs, grid_path)
        out["grid"] = str(grid_path)
    return out


def _first_images(info, n: int) -> np.ndarray:
    from gandist.data.reader import iter_blocks, iter_samples

    size, ch = info.image_size, info.channels
    got: list[np.ndarray] = []
    for i, count in enumerate(info.shard_counts):
        url = info.shard_path(i)
        k = min(count, n - len(got))
        if info.sample_format == "blocks":
            for b in iter_blocks(url, 0, k, info.block_size, count):
                if not b.error:
                    got += list(im.convert_batch(b.imgs, size, ch))
        else:
            for s in iter_samples(url, 0, k):
                try:
                    a, _ = decode_sample(s, 0)
                    got.append(im.convert(a, size, ch))
                except ValueError:
                    pass
        if len(got) >= n:
            break
    return np.stack(got[:n]) if got else np.zeros((0, size, size, ch), np.uint8)


def save_grid(imgs_bhwc: np.ndarray, path: str | os.PathLike, min_cell_px: int = 64) -> None:
    """Tile images into a square-ish grid PNG (nearest-neighbour upscaled so small images are visible)."""
    from PIL import Image

    b = len(imgs_bhwc)
    if b == 0:
        raise DataError("no readable images for the preview grid")
    _, h, w, c = imgs_bhwc.shape
    cols = int(np.ceil(np.sqrt(b)))
    rows = int(np.ceil(b / cols))
    pad = 2
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 128, np.uint8)
    for i, a in enumerate(imgs_bhwc):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = a
    scale = max(1, int(np.ceil(min_cell_px / max(h, w))))
    img = im.hwc_to_pil(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
