"""Small datasets for the data tests: every image carries its own index in its pixels, so a
test can tell exactly which samples a stream delivered."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from gandist.config import DataConfig
from gandist.data import build_stream, resolve_dataset, write_shards
from gandist.data.manifest import write_manifest


def indexed_image(i: int, size: int = 8, channels: int = 1) -> np.ndarray:
    a = np.full((size, size, channels), (i * 7) % 251, np.uint8)
    a[0, 0, :] = i // 256
    a[0, 1, :] = i % 256
    return a


def index_of(img_chw) -> int:
    a = np.asarray(img_chw)
    return int(a[0, 0, 0]) * 256 + int(a[0, 0, 1])


def write_uneven(root: Path, counts: list[int], fmt: str = "png", num_classes: int = 5, block_size: int = 4) -> Path:
    """Shards 000000.tar.. holding ``counts[i]`` samples each (indices run on across shards)."""
    root.mkdir(parents=True, exist_ok=True)
    shards, start = [], 0
    names = [str(c) for c in range(num_classes)]
    for j, n in enumerate(counts):
        tmp = root / f"tmp{j}"
        samples = [(f"{i:06d}", indexed_image(i), i % num_classes) for i in range(start, start + n)]
        m = write_shards(samples, tmp, class_names=names, shard_size=10**6, fmt=fmt, block_size=block_size)
        (tmp / "000000.tar").rename(root / f"{j:06d}.tar")
        entry = dict(m["shards"][0], name=f"{j:06d}.tar")
        shards.append(entry)
        shutil.rmtree(tmp)
        start += n
    m.update(shards=shards, num_samples=sum(counts))
    write_manifest(root, m)
    return root


def collect(cfg: DataConfig, root: Path, *, world: int, batch: int, seed: int = 0, num_batches: int | None = None,
            rank: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    info = resolve_dataset(DataConfig(**{**cfg.__dict__, "path": str(root)}))
    s = build_stream(cfg, info, batch_size_per_rank=batch, rank=rank, world_size=world, seed=seed, image_size=0, channels=0)
    n = num_batches if num_batches is not None else s.batches_per_epoch
    it = iter(s)
    out = [tuple(t.numpy() for t in next(it)) for _ in range(n)]
    s.close()
    return out
