"""How the data path's cost grows with the data: make N JPEG images into shards in parallel, then
stream one epoch on R ranks x W loader workers, and check every key was read exactly once.

    python benchmarks/scale.py --num-images 10000 --work /tmp/scale
    python benchmarks/scale.py --num-images 1000000 --work /tmp/scale --out benchmarks/results/scale_1m.json

The images are procedural (64 px RGB, 10 classes: a class-coloured grating with a random phase
and noise, so the JPEGs are not alike) and each carries its own index in its top 24 rows: 3 x 8
gray blocks of 8 x 8 pixels, black or white, one bit each. The blocks sit on JPEG's 8 x 8 grid
and are gray (no chroma), so they survive the lossy codec exactly and a rank can name every
sample it read without any hook in the loader.

Steps and what each records:

1. ``images.npy`` / ``labels.npy`` (a memory-mapped array, written in chunks; not timed).
2. One core's shard-making rate: ``gandist shards make --format jpg`` on one small slice alone.
3. ``--cores`` slices at once (``shards make --slice I/N``), then ``shards merge``: images/s in
   all and its ratio to cores x one core's rate.
4. One epoch (``data.mode=epoch``) on ``--ranks`` processes, each with ``--workers`` loader
   workers (the stream of ``gandist train``, without the model): time from building the stream
   to its first batch, peak RSS of the rank and of its largest worker (VmHWM), images/s, and the
   keys read, which must be every key of the epoch once across the ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE, CLASSES, BITS = 64, 10, 24


def make_images(n: int, start: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images ``start`` .. ``start + n``: (N x 64 x 64 x 3 uint8, labels)."""
    idx = np.arange(start, start + n)
    labels = (idx * 7919 % CLASSES).astype(np.int64)  # classes interleaved, not in runs
    rng = np.random.default_rng([seed, start])
    gratings, noise = _banks()
    # A grating of the class at one of 64 phases, plus one of 256 noise images: two uint8 passes
    # (computing each image in float took most of a million images' writing time).
    img = gratings[labels, rng.integers(0, gratings.shape[1], n)]
    img += noise[rng.integers(0, len(noise), n)]  # gratings stop at 231, noise at 24: no overflow
    bits = (idx[:, None] >> np.arange(BITS)[None]) & 1  # N x 24, least significant first
    blocks = np.repeat(np.repeat(bits.reshape(n, 3, 8) * 255, 8, axis=1), 8, axis=2)  # N x 24 x 64
    img[:, :24, :, :] = blocks[..., None].astype(np.uint8)
    return img, labels


def _banks() -> tuple[np.ndarray, np.ndarray]:
    """Per class, a grating (angle and frequency by class) in the class's colour at 64 phases,
    uint8 up to 231: CLASSES x 64 x H x W x 3; and 256 noise images, uint8 0..24."""
    global _BANKS
    if _BANKS is None:
        c = np.arange(CLASSES, dtype=np.float32)[:, None, None, None]
        phase = np.linspace(0, 2 * np.pi, 64, endpoint=False, dtype=np.float32)[None, :, None, None]
        yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
        arg = 2 * np.pi * (3.0 + (c % 4) * 2.0) * (np.cos(c * np.pi / CLASSES) * xx + np.sin(c * np.pi / CLASSES) * yy)
        wave = 0.5 + 0.5 * np.sin(arg + phase)  # CLASSES x 64 x H x W
        k = np.arange(CLASSES, dtype=np.float32)
        tint = np.stack([(k * 37) % 256, (k * 91) % 256, (k * 53 + 80) % 256], -1) * (231 / 255)
        gratings = (wave[..., None] * tint[:, None, None, None, :]).astype(np.uint8)
        noise = np.random.default_rng(7).integers(0, 25, (256, SIZE, SIZE, 3), dtype=np.uint8)
        _BANKS = gratings, noise
    return _BANKS


_BANKS: tuple[np.ndarray, np.ndarray] | None = None


def key_of(batch_bchw) -> np.ndarray:
    """The index each image of a uint8 B x C x 64 x 64 batch carries (see the module docstring)."""
    x = np.asarray(batch_bchw)[:, 0, :24, :].astype(np.float32)  # B x 24 x 64
    bits = x.reshape(len(x), 3, 8, 8, 8).mean(axis=(2, 4)) > 127  # B x 3 x 8
    return (bits.reshape(len(x), BITS) << np.arange(BITS)[None]).sum(1)


def write_source(work: Path, n: int) -> tuple[Path, Path]:
    imgs_path, labels_path = work / "images.npy", work / "labels.npy"
    if imgs_path.exists() and labels_path.exists() and len(np.load(labels_path)) == n:
        return imgs_path, labels_path
    imgs = np.lib.format.open_memmap(imgs_path, mode="w+", dtype=np.uint8, shape=(n, SIZE, SIZE, 3))
    labels = np.empty(n, np.int64)
    for a in range(0, n, 20000):
        b = min(n, a + 20000)
        imgs[a:b], labels[a:b] = make_images(b - a, a)
    imgs.flush()
    del imgs
    np.save(labels_path, labels)
    return imgs_path, labels_path


def gandist(*args: str) -> list[str]:
    return [sys.executable, "-m", "gandist", "shards", *args]


def make_cmd(src: tuple[Path, Path], out: Path, slice_: str, shard_size: int) -> list[str]:
    return gandist("make", "--from", str(src[0]), "--labels", str(src[1]), "--format", "jpg", "--jpg-quality", "90",
                   "--shard-size", str(shard_size), "--slice", slice_, "--out", str(out), "--no-progress")


def one_thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def timed(cmds: list[list[str]]) -> float:
    """Run the commands at once; wall seconds until the last one ends (any failure stops us)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=one_thread_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    for p, c in zip(procs, cmds):
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"{' '.join(c)} failed ({p.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - t0


def net_of_startup(seconds: float, startup: float) -> tuple[float, bool]:
    """(seconds less the start-up, True), or (seconds, False) when the work took under twice the
    start-up: the start-up estimate is itself noisy (seen: a 3,000-image make that finished
    faster than two slices of one image did), so subtracting it from a short run says nothing."""
    return (seconds - startup, True) if seconds > 2 * startup else (seconds, False)


def make_shards(work: Path, src: tuple[Path, Path], n: int, cores: int, shard_size: int) -> dict:
    probe_slices = max(cores, n // max(10000, n // 20))  # one slice: 10,000 images, or 5 % of a large set
    probe = work / "probe"
    if probe.exists():
        subprocess.run(["rm", "-rf", str(probe)], check=True)
    # What a slice costs before its first image (interpreter, imports, listing the source): one
    # slice of a single image. Taken off every timing, so the rates are the encoding's.
    # Alone for the one-core rate; ``cores`` at once for the parallel one (they share the cores).
    startup = min(timed([make_cmd(src, work / "startup", f"0/{n}", shard_size)]) for _ in range(2))
    startup_parallel = min(timed([make_cmd(src, work / f"startup{i}", f"{i}/{n}", shard_size) for i in range(cores)])
                           for _ in range(2))
    subprocess.run(["rm", "-rf", *[str(d) for d in work.glob("startup*")]], check=True)
    t_probe = timed([make_cmd(src, probe, f"0/{probe_slices}", shard_size)])
    probe_n = json.loads((probe / "manifest.json").read_text())["num_samples"]
    probe_net, probe_net_ok = net_of_startup(t_probe, startup)
    one_core = probe_n / probe_net
    parts = [work / "parts" / str(i) for i in range(cores)]
    subprocess.run(["rm", "-rf", str(work / "parts"), str(work / "shards")], check=True)
    t_make = timed([make_cmd(src, p, f"{i}/{cores}", shard_size) for i, p in enumerate(parts)])
    t0 = time.perf_counter()
    subprocess.run(gandist("merge", "--out", str(work / "shards"), *map(str, parts)), env=one_thread_env(), check=True,
                   stdout=subprocess.DEVNULL)
    t_merge = time.perf_counter() - t0
    make_net, make_net_ok = net_of_startup(t_make, startup_parallel)
    rate = n / make_net
    return {"one_core_images_per_s": round(one_core, 1), "probe_images": probe_n, "cores": cores,
            "startup_seconds": round(startup, 2),
            "startup_parallel_seconds": round(startup_parallel, 2), "startup_taken_off": probe_net_ok and make_net_ok,
            "make_seconds": round(t_make, 2), "make_images_per_s": round(rate, 1),
            "parallel_efficiency": round(rate / (cores * one_core), 3), "merge_seconds": round(t_merge, 2),
            "shard_bytes": sum(f.stat().st_size for f in (work / "shards").glob("*.tar"))}


def peak_rss_mb(pid: int | str) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # ended meanwhile
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return out


def stream_rank(args) -> None:
    """One rank of the epoch (run as its own process by ``stream_epoch``)."""
    import torch

    torch.set_num_threads(1)
    from gandist.config import DataConfig
    from gandist.data import build_stream, resolve_dataset

    cfg = DataConfig(path=str(args.work / "shards"), num_workers=args.workers)
    t0 = time.perf_counter()
    stream = build_stream(cfg, resolve_dataset(cfg), batch_size_per_rank=args.batch, rank=args.stream_rank,
                          world_size=args.ranks, seed=0, image_size=0, channels=0)
    it = iter(stream)
    keys = [key_of(next(it)[0].numpy())]
    t_first = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(stream.batches_per_epoch - 1):
        keys.append(key_of(next(it)[0].numpy()))
    t_rest = time.perf_counter() - t1
    workers = children(os.getpid())
    worker_rss = max((peak_rss_mb(w) for w in workers), default=0.0)
    stream.close()
    keys_all = np.concatenate(keys)
    np.save(args.work / f"keys_rank{args.stream_rank}.npy", keys_all)
    json.dump({"rank": args.stream_rank, "first_batch_s": round(t_first, 3), "rest_s": round(t_rest, 2),
               "images": int(len(keys_all)), "images_per_s": round((len(keys_all) - args.batch) / t_rest, 1),
               "rss_mb": round(peak_rss_mb("self"), 1), "worker_rss_mb": round(worker_rss, 1),
               "num_worker_processes": len(workers)},
              open(args.work / f"rank{args.stream_rank}.json", "w"))


def stream_epoch(args, n: int) -> dict:
    cmds = [[sys.executable, __file__, "--num-images", str(n), "--work", str(args.work), "--ranks", str(args.ranks),
             "--workers", str(args.workers), "--batch", str(args.batch), "--stream-rank", str(r)]
            for r in range(args.ranks)]
    wall = timed(cmds)
    ranks = [json.load(open(args.work / f"rank{r}.json")) for r in range(args.ranks)]
    keys = np.concatenate([np.load(args.work / f"keys_rank{r}.npy") for r in range(args.ranks)])
    expected = n // (args.ranks * args.batch) * args.ranks * args.batch
    exactly_once = len(keys) == expected and len(np.unique(keys)) == len(keys) and keys.min() >= 0 and keys.max() < n
    # The ranks run at once: their rates add up (the wall time also holds interpreter start-up).
    return {"ranks": ranks, "epoch_wall_s": round(wall, 2), "images_per_s": round(sum(r["images_per_s"] for r in ranks), 1),
            "keys_read": int(len(keys)), "keys_expected": int(expected), "exactly_once": bool(exactly_once)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-images", type=int, required=True)
    p.add_argument("--work", type=Path, required=True, help="scratch folder (the images and shards go here)")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="parallel shard-making slices")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--workers", type=int, default=4, help="loader workers per rank")
    p.add_argument("--batch", type=int, default=256, help="batch per rank")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    p.add_argument("--stream-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.work = args.work.resolve()
    if args.stream_rank is not None:
        return stream_rank(args)
    n = args.num_images
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    src = write_source(args.work, n)
    print(f"scale: {n} procedural images written in {time.perf_counter() - t0:.1f} s", flush=True)
    make = make_shards(args.work, src, n, args.cores, args.shard_size)
    print(f"scale: shards ({make['startup_seconds']:.1f} s start-up taken off): one core "
          f"{make['one_core_images_per_s']:.0f} images/s; {args.cores} slices at once "
          f"{make['make_images_per_s']:.0f} images/s ({make['parallel_efficiency']:.2f} x cores x one core), merge "
          f"{make['merge_seconds']:.1f} s, {make['shard_bytes'] / 2**20:.0f} MiB", flush=True)
    epoch = stream_epoch(args, n)
    for r in epoch["ranks"]:
        print(f"scale: rank {r['rank']}: first batch {r['first_batch_s']:.2f} s, {r['images_per_s']:.0f} images/s, "
              f"peak RSS {r['rss_mb']:.0f} MB, largest worker {r['worker_rss_mb']:.0f} MB "
              f"({r['num_worker_processes']} workers)")
    print(f"scale: epoch {epoch['keys_read']} images on {args.ranks} ranks x {args.workers} workers in "
          f"{epoch['epoch_wall_s']:.1f} s wall ({epoch['images_per_s']:.0f} images/s, the ranks' sum); every key once: {epoch['exactly_once']}")
    from gandist.data.jpeg import describe, resolve_decoder

    result = {"num_images": n, "image_size": SIZE, "format": "jpg", "jpeg_decoder": describe(resolve_decoder("auto")),
              "batch_per_rank": args.batch, "workers": args.workers,
              "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "make": make, "epoch": epoch}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if not epoch["exactly_once"]:
        raise SystemExit("scale: some key was read twice or not at all")


if __name__ == "__main__":
    main()
