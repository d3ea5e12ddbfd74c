"""Loader throughput against raw reads of the same bytes, at several image sizes and worker counts.

Per size, in one process run (so the ratios share the machine's state):

* ``raw png`` / ``raw blocks``: the floor of work any loader of these shards must do, with nothing
  else: the same tar members read with ``tarfile``, decoded (PIL for PNG, ``np.load`` for blocks)
  into a preallocated uint8 B x C x H x W batch, half the batch flipped, ``torch.from_numpy``. One
  process, no shuffling: the reference the loaders are divided by.
* ``folder``: the plain PyTorch loader users already have: one PNG file per sample read with
  PIL in a ``Dataset``, per-sample random flip, ``DataLoader(shuffle=True)``.
* ``png shards`` / ``block shards``: gandist's stream (shuffled, exact-once epochs, random flip).

Each loader runs with 0 (in-process), 1, 2 and 4 workers; per worker count all five take turns
for `--rounds` rounds of `--sec` seconds (noise on a shared machine hits all alike), medians
reported. Printed and written to
``benchmarks/results/loader_<host>_<date>.md``: images/s and the ratios png shards / folder,
png shards / raw png, block shards / raw blocks. ``--profile`` adds where the in-process time
goes (cProfile, top functions) for the two shard formats.

    python benchmarks/loader.py                                   # 32/64/128 px, 0/1/2/4 workers
    python benchmarks/loader.py --sizes 32 --workers 0 --profile
    python benchmarks/loader.py --device cuda --workers 0 4 8      # batches copied to the GPU

The data is written once into --work-dir (default: a temp dir) and read from the page cache:
this measures the per-sample pipeline cost, not the disk.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import os
import platform
import pstats
import shlex
import statistics
import sys
import tarfile
import tempfile
import time
from functools import partial
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


SOURCES = ("raw_png", "raw_blocks", "folder", "png", "blocks")


# Raw reads: the same bytes, nothing but decode + layout + flip -------------------------------------


def _raw_batches(tars: list[Path], batch: int, size: int, decode_member):
    """Endless uint8 BCHW batches filled from the tars' members in order, half of each flipped."""
    rng = np.random.default_rng(0)
    x = np.empty((batch, 3, size, size), np.uint8)
    y = np.empty(batch, np.int64)
    pos = 0
    while True:
        for path in tars:
            with tarfile.open(path) as tar:
                for m in tar:
                    for imgs_bhwc, labels in decode_member(tar, m):
                        i = 0
                        while i < len(imgs_bhwc):
                            take = min(batch - pos, len(imgs_bhwc) - i)
                            x[pos: pos + take] = imgs_bhwc[i: i + take].transpose(0, 3, 1, 2)
                            y[pos: pos + take] = labels[i: i + take]
                            pos += take
                            i += take
                            if pos == batch:
                                flipped = np.flatnonzero(rng.random(batch) < 0.5)
                                x[flipped] = x[flipped, :, :, ::-1]
                                yield torch.from_numpy(x), torch.from_numpy(y)
                                pos = 0


def _decode_png(tar: tarfile.TarFile, m: tarfile.TarInfo):
    if m.name.endswith(".png"):
        with Image.open(io.BytesIO(tar.extractfile(m).read())) as img:
            yield np.asarray(img)[None], (0,)


def _decode_block(tar: tarfile.TarFile, m: tarfile.TarInfo):
    if m.name.endswith(".imgs.npy"):
        imgs = np.load(io.BytesIO(tar.extractfile(m).read()))
        yield imgs, np.zeros(len(imgs), np.int64)


def raw_batches(root: Path, fmt: str, batch: int, size: int):
    return _raw_batches(sorted(root.glob("*.tar")), batch, size, _decode_png if fmt == "png" else _decode_block)


# The plain folder loader ---------------------------------------------------------------------------


class FolderDataset(torch.utils.data.Dataset):
    """The baseline users write: an ImageFolder of PNGs read with PIL, one file per sample, and a
    per-sample random flip (as torchvision's RandomHorizontalFlip would do in the workers)."""

    def __init__(self, root: Path):
        self.files = sorted(root.rglob("*.png"))
        classes = sorted({f.parent.name for f in self.files})
        self.labels = [classes.index(f.parent.name) for f in self.files]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with Image.open(self.files[i]) as img:
            a = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
        if torch.rand(()) < 0.5:
            a = a[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(a)), self.labels[i]


def folder_batches(root: Path, batch: int, workers: int, device: str):
    dl = torch.utils.data.DataLoader(FolderDataset(root), batch_size=batch, shuffle=True, drop_last=True,
                                     num_workers=workers, pin_memory=device == "cuda", persistent_workers=workers > 0,
                                     generator=torch.Generator().manual_seed(0))
    while True:
        yield from dl


def stream_batches(root: Path, batch: int, workers: int):
    cfg = DataConfig(path=str(root), num_workers=workers, random_flip=True, shuffle_buffer=2000)
    s = build_stream(cfg, resolve_dataset(cfg), batch_size_per_rank=batch, rank=0, world_size=1, seed=0,
                     image_size=0, channels=0)
    try:
        yield from s
    finally:
        s.close()


def rate(batches, device: str, sec: float) -> float:
    """Images/s of ``batches`` over ``sec`` seconds."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 <= sec:
        x, _ = next(batches)
        x = x.to(device, non_blocking=True)
        n += x.shape[0]
    if device == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def alternate(factories: dict, device: str, sec: float, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Each source's images/s in ``rounds`` turns (A, B, C, A, B, C, ...), so that noise on a
    shared machine hits all alike. Each turn starts the source afresh and closes it after: live
    DataLoader workers would otherwise refill their prefetch queues while another source is timed
    (stealing its CPU and handing their own next turn a free burst). The first ``warmup`` batches
    (worker start-up, the initial prefetch) are not timed."""
    rates: dict[str, list[float]] = {k: [] for k in factories}
    for _ in range(rounds):
        for name, make in factories.items():
            it = make()
            for _ in range(warmup):
                next(it)
            rates[name].append(rate(it, device, sec))
            it.close()
    return rates


def profile_stream(root: Path, batch: int, num_batches: int, top: int = 12) -> str:
    cfg = DataConfig(path=str(root), num_workers=0, random_flip=True, shuffle_buffer=2000)
    s = build_stream(cfg, resolve_dataset(cfg), batch_size_per_rank=batch, rank=0, world_size=1, seed=0,
                     image_size=0, channels=0)
    it = iter(s)
    next(it)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(num_batches):
        next(it)
    prof.disable()
    s.close()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    return text[text.index("ncalls"):].rstrip() if "ncalls" in text else text


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


def prepare(work: Path, size: int, n: int) -> tuple[Path, Path, Path]:
    folder, png, blocks = work / f"folder{size}_{n}", work / f"png{size}_{n}", work / f"blocks{size}_{n}"
    if (blocks / "manifest.json").exists():
        return folder, png, blocks
    imgs, labels = make_images(n, size)
    for i, (a, y) in enumerate(zip(imgs, labels)):
        (folder / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(folder / str(y) / f"{i:06d}.png", compress_level=1)
    names = [str(c) for c in range(10)]
    samples = [(f"{i:06d}", a, int(y)) for i, (a, y) in enumerate(zip(imgs, labels))]
    write_shards(samples, png, class_names=names, shard_size=1000, fmt="png")
    write_shards(samples, blocks, class_names=names, shard_size=4096, fmt="blocks", block_size=256)
    return folder, png, blocks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4], help="loader worker counts to run")
    ap.add_argument("--num-images", type=int, default=0, help="images per size (default: 8192 at 32, 4096 at 64, 2048 at 128)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu", help="cpu or cuda: batches are copied there (pinned memory with cuda)")
    ap.add_argument("--sec", type=float, default=1.0, help="seconds per variant per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per worker count, variants taking turns (median reported)")
    ap.add_argument("--work-dir", default="", help="where the data is written (default: a temp dir)")
    ap.add_argument("--profile", action="store_true", help="also profile the in-process shard streams (cProfile)")
    ap.add_argument("--out", default="", help="markdown results file (default benchmarks/results/loader_<host>_<date>.md; '-' for none)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="gandist-loader-bench-"))
    load_before = os.getloadavg()[0]
    rows, profiles = [], []
    for size in args.sizes:
        n = args.num_images or {32: 8192, 64: 4096}.get(size, 2048)
        folder, png, blocks = prepare(work, size, n)
        batch = min(args.batch, n // 8)
        for w in args.workers:
            factories = {"raw_png": partial(raw_batches, png, "png", batch, size),
                         "raw_blocks": partial(raw_batches, blocks, "blocks", batch, size),
                         "folder": partial(folder_batches, folder, batch, w, args.device),
                         "png": partial(stream_batches, png, batch, w), "blocks": partial(stream_batches, blocks, batch, w)}
            rates = alternate(factories, args.device, args.sec, args.rounds, warmup=1 + w)
            med = {k: statistics.median(v) for k, v in rates.items()}
            rows.append((size, n, batch, w, med, rates))
            print(f"{size}x{size}, {w} workers: raw png {med['raw_png']:,.0f} | raw blocks {med['raw_blocks']:,.0f} | "
                  f"folder {med['folder']:,.0f} | png shards {med['png']:,.0f} ({med['png'] / med['folder']:.2f}x folder, "
                  f"{med['png'] / med['raw_png']:.2f}x raw png) | block shards {med['blocks']:,.0f} "
                  f"({med['blocks'] / med['raw_blocks']:.2f}x raw blocks)", flush=True)
        if args.profile:
            profiles.append((size, "png shards", profile_stream(png, batch, max(4, 2048 // batch))))
            profiles.append((size, "block shards", profile_stream(blocks, batch, max(20, 32768 // batch))))
    load_after = os.getloadavg()[0]

    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        f"# Loader throughput ({datetime.date.today().isoformat()})",
        "",
        f"- machine: {machine()}",
        f"- command: `{cmd}`",
        f"- device: {args.device}; augmentation: random horizontal flip; data from the page cache; per worker count, "
        f"{args.rounds} rounds of {args.sec:g} s per variant (each started afresh, 1 + workers batches untimed), "
        f"variants taking turns, median reported (min-max of the "
        f"rounds in the second table); load average {load_before:.1f} before, {load_after:.1f} after",
        "- raw png / raw blocks: the same tar members read with tarfile and decoded (PIL / np.load) into a "
        "preallocated uint8 BCHW batch, half of it flipped; one process, no shuffling",
        "",
        "| size | batch | workers | raw png | raw blocks | folder | png shards | png / folder | png / raw png | "
        "block shards | blocks / raw blocks |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, n, batch, w, med, rates in rows:
        lines.append(f"| {size}x{size} | {batch} | {w} | {med['raw_png']:,.0f} | {med['raw_blocks']:,.0f} | {med['folder']:,.0f} | "
                     f"{med['png']:,.0f} | {med['png'] / med['folder']:.2f} | {med['png'] / med['raw_png']:.2f} | "
                     f"{med['blocks']:,.0f} | {med['blocks'] / med['raw_blocks']:.2f} |")
    lines += ["", "| size | workers | " + " | ".join(SOURCES) + " |", "| --- | --- |" + " --- |" * len(SOURCES)]
    for size, n, batch, w, med, rates in rows:
        lines.append(f"| {size}x{size} | {w} | " + " | ".join(f"{min(rates[k]):,.0f}-{max(rates[k]):,.0f}" for k in SOURCES) + " |")
    lines.append("")
    lines.append("Figures are images/s; ratios are measured in this one run.")
    for size, name, text in profiles:
        lines += ["", f"## Profile: {name}, {size}x{size}, in-process (cProfile, by own time)", "", "```", text, "```"]
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
