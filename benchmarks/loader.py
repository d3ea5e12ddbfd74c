"""Loader throughput: images/s of a plain PyTorch folder loader (the baseline) vs gandist's
per-image PNG shards and block shards, same augmentation (random flip), same worker count,
same batch size, at several image sizes. Prints a table with ratios to the baseline and writes
it to benchmarks/results/loader_<host>_<date>.md.

    python benchmarks/loader.py                        # CPU, 0 workers (in-process), 32/64/128
    python benchmarks/loader.py --workers 4 --device cuda --sizes 32 64 128

The data is written once into --work-dir (default: a temp dir) and read from the page cache:
this measures the per-sample pipeline cost, not the disk.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gandist.config import DataConfig  # noqa: E402
from gandist.data import build_stream, resolve_dataset, write_shards  # noqa: E402


def make_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random RGB images (upsampled 8x8 noise + a little grain): PNG sizes like photos'."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        big = np.asarray(Image.fromarray(small[i]).resize((size, size), Image.BILINEAR), dtype=np.int16)
        out[i] = np.clip(big + rng.integers(-4, 5, big.shape), 0, 255)
    return out, (np.arange(n) % 10).astype(np.int64)


class FolderDataset(torch.utils.data.Dataset):
    """The baseline users write: an ImageFolder of PNGs read with PIL, one file per sample."""

    def __init__(self, root: Path):
        self.files = sorted(root.rglob("*.png"))
        classes = sorted({f.parent.name for f in self.files})
        self.labels = [classes.index(f.parent.name) for f in self.files]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with Image.open(self.files[i]) as img:
            a = np.asarray(img.convert("RGB"))
        return torch.from_numpy(a).permute(2, 0, 1), self.labels[i]


def flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mask = torch.rand(x.shape[0], generator=g) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def time_baseline(root: Path, batch: int, workers: int, device: str, min_sec: float) -> float:
    ds = FolderDataset(root)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                     pin_memory=device == "cuda", persistent_workers=workers > 0,
                                     generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    n, t0 = 0, None
    while True:
        for x, y in dl:
            x = flip(x, g).to(device, non_blocking=True)
            if t0 is None:  # first batch: worker start-up is not throughput
                t0 = time.perf_counter()
                continue
            n += x.shape[0]
            if time.perf_counter() - t0 > min_sec:
                if device == "cuda":
                    torch.cuda.synchronize()
                return n / (time.perf_counter() - t0)


def time_stream(root: Path, batch: int, workers: int, device: str, min_sec: float) -> float:
    cfg = DataConfig(path=str(root), num_workers=workers, random_flip=True, shuffle_buffer=2000)
    info = resolve_dataset(cfg)
    s = build_stream(cfg, info, batch_size_per_rank=batch, rank=0, world_size=1, seed=0, image_size=0, channels=0)
    it = iter(s)
    next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 <= min_sec:
        x, y = next(it)
        x = x.to(device, non_blocking=True)
        n += x.shape[0]
    if device == "cuda":
        torch.cuda.synchronize()
    rate = n / (time.perf_counter() - t0)
    s.close()
    return rate


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{platform.node()}: {cpu}, {os.cpu_count()} logical CPUs{gpu}; Python {platform.python_version()}, torch {torch.__version__}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--num-images", type=int, default=0, help="images per size (default: 8192 at 32, 4096 at 64, 2048 at 128)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0, help="loader workers for every variant (default 0: in-process)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: batches are copied there (pinned memory with cuda)")
    ap.add_argument("--min-sec", type=float, default=3.0, help="seconds measured per variant")
    ap.add_argument("--work-dir", default="", help="where the data is written (default: a temp dir)")
    ap.add_argument("--out", default="", help="markdown results file (default benchmarks/results/loader_<host>_<date>.md; '-' for none)")
    args = ap.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="gandist-loader-bench-"))
    rows = []
    for size in args.sizes:
        n = args.num_images or {32: 8192, 64: 4096}.get(size, 2048)
        imgs, labels = make_images(n, size)
        folder, png, blocks = work / f"folder{size}", work / f"png{size}", work / f"blocks{size}"
        if not folder.exists():
            for i, (a, y) in enumerate(zip(imgs, labels)):
                (folder / str(y)).mkdir(parents=True, exist_ok=True)
                Image.fromarray(a).save(folder / str(y) / f"{i:06d}.png", compress_level=1)
        names = [str(c) for c in range(10)]
        samples = [(f"{i:06d}", a, int(y)) for i, (a, y) in enumerate(zip(imgs, labels))]
        write_shards(samples, png, class_names=names, shard_size=1000, fmt="png")
        write_shards(samples, blocks, class_names=names, shard_size=4096, fmt="blocks", block_size=256)
        batch = min(args.batch, n // 4)
        base = time_baseline(folder, batch, args.workers, args.device, args.min_sec)
        r_png = time_stream(png, batch, args.workers, args.device, args.min_sec)
        r_blk = time_stream(blocks, batch, args.workers, args.device, args.min_sec)
        rows.append((size, n, batch, base, r_png, r_blk))
        print(f"{size}x{size}: folder {base:,.0f} img/s | png shards {r_png:,.0f} img/s ({r_png / base:.2f}x) | "
              f"block shards {r_blk:,.0f} img/s ({r_blk / base:.2f}x, {r_blk / r_png:.1f}x png shards)", flush=True)

    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        f"# Loader throughput ({datetime.date.today().isoformat()})",
        "",
        f"- machine: {machine()}",
        f"- command: `{cmd}`",
        f"- workers per variant: {args.workers}, device: {args.device}, augmentation: random horizontal flip, "
        f"data from the page cache, {args.min_sec:.0f} s measured per variant after the first batch",
        "",
        "| size | images | batch | folder PNG (baseline) img/s | PNG shards img/s | ratio | block shards img/s | ratio | blocks / PNG shards |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, n, batch, base, r_png, r_blk in rows:
        lines.append(f"| {size}x{size} | {n} | {batch} | {base:,.0f} | {r_png:,.0f} | {r_png / base:.2f} | {r_blk:,.0f} | "
                     f"{r_blk / base:.2f} | {r_blk / r_png:.1f} |")
    text = "\n".join(lines) + "\n"
    if args.out != "-":
        out = Path(args.out or Path(__file__).parent / "results" /
                   f"loader_{platform.node() or 'host'}_{datetime.date.today().isoformat()}.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
