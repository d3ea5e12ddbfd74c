"""gandist's shards beside MosaicML Streaming (MDS) and Lightning's litdata: the same images,
written in each format, one epoch read by each with the same workers and batch, in one run.

    pip install mosaicml-streaming litdata          # into a second environment (they pin torch)
    python benchmarks/peers.py --num-images 20000 --work /tmp/peers --peers-python /path/to/peers-venv/bin/python

The images are benchmarks/scale.py's (64 px, 10 classes, each carrying its index, so every
reader is also checked to deliver every image once). Two pairs of formats:

* JPEG: gandist JPEG shards, and MDS / litdata columns holding JPEG bytes (quality 90), every
  reader decoding with Pillow (``data.jpeg_decoder=pil``), plus gandist with its default decoder;
* raw pixels: gandist block shards, and MDS / litdata columns of raw uint8 arrays.

Each reader runs in its own process (gandist's in this environment, the peers' in
``--peers-python``), one after another, and reports: time from building the dataset to the
first batch, images/s over the rest of the epoch, peak RSS of the process and of its largest
loader worker (VmHWM), and whether every key came once. Readers shuffle, as training would.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from scale import SIZE, children, key_of, peak_rss_mb, write_source  # noqa: E402


# Writers -----------------------------------------------------------------------------------------
def _jpeg(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_mds(work: Path, raw: bool) -> None:
    from streaming import MDSWriter

    imgs, labels = np.load(work / "images.npy", mmap_mode="r"), np.load(work / "labels.npy")
    out = work / ("mds-raw" if raw else "mds-jpeg")
    with MDSWriter(out=str(out), columns={"image": "bytes", "label": "int"}, size_limit=1 << 26) as w:
        for a, y in zip(imgs, labels):
            w.write({"image": a.tobytes() if raw else _jpeg(np.asarray(a)), "label": int(y)})


def _litdata_item(i: int, work: str, raw: bool) -> dict:
    imgs = np.load(Path(work) / "images.npy", mmap_mode="r")
    labels = np.load(Path(work) / "labels.npy", mmap_mode="r")
    a = np.asarray(imgs[i])
    return {"image": a.tobytes() if raw else _jpeg(a), "label": int(labels[i])}


def write_litdata(work: Path, raw: bool) -> None:
    from functools import partial

    from litdata import optimize

    n = len(np.load(work / "labels.npy"))
    optimize(fn=partial(_litdata_item, work=str(work), raw=raw), inputs=list(range(n)),
             output_dir=str(work / ("litdata-raw" if raw else "litdata-jpeg")), chunk_bytes="64MB", num_workers=1)


# Readers -----------------------------------------------------------------------------------------
def _decode(data: bytes, raw: bool) -> np.ndarray:
    if raw:
        return np.frombuffer(data, np.uint8).reshape(SIZE, SIZE, 3)
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
        img.load()
        return np.asarray(img)


def peer_batches(fmt: str, path: Path, batch: int, workers: int):
    import torch

    raw = fmt.endswith("raw")

    def sample(obj):
        return torch.from_numpy(_decode(obj["image"], raw).transpose(2, 0, 1).copy()), obj["label"]

    if fmt.startswith("mds"):
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()

        class Images(StreamingDataset):
            def __getitem__(self, i):
                return sample(super().__getitem__(i))

        ds = Images(local=str(path), shuffle=True, batch_size=batch, shuffle_seed=0)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, drop_last=True)
    else:
        from litdata import StreamingDataLoader, StreamingDataset

        class Images(StreamingDataset):
            def __getitem__(self, i):
                return sample(super().__getitem__(i))

        ds = Images(input_dir=str(path), shuffle=True, seed=0)
        loader = StreamingDataLoader(ds, batch_size=batch, num_workers=workers, drop_last=True)
    for x, _ in loader:
        yield x


def gandist_batches(fmt: str, path: Path, batch: int, workers: int, decoder: str):
    from gandist.config import DataConfig
    from gandist.data import build_stream, resolve_dataset

    cfg = DataConfig(path=str(path), num_workers=workers, jpeg_decoder=decoder if decoder != "-" else "auto")
    s = build_stream(cfg, resolve_dataset(cfg), batch_size_per_rank=batch, rank=0, world_size=1, seed=0,
                     image_size=0, channels=0)
    it = iter(s)
    try:
        for _ in range(s.batches_per_epoch):
            yield next(it)[0]
    finally:
        s.close()


def read(args) -> None:
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.fmt.startswith("gandist"):
        batches = gandist_batches(args.fmt, args.dir, args.batch, args.workers, args.decoder)
    else:
        batches = peer_batches(args.fmt, args.dir, args.batch, args.workers)
    keys = [key_of(next(batches).numpy())]
    t_first = time.perf_counter() - t0
    worker_rss = 0.0
    t1 = time.perf_counter()
    for i, x in enumerate(batches):
        keys.append(key_of(x.numpy()))
        if i % 4 == 0:  # while the workers live (VmHWM is their peak so far)
            worker_rss = max([worker_rss, *(peak_rss_mb(w) for w in children(os.getpid()))])
    t_rest = time.perf_counter() - t1
    k = np.concatenate(keys)
    json.dump({"format": args.fmt, "decoder": args.decoder, "first_batch_s": round(t_first, 3),
               "images": int(len(k)), "images_per_s": round((len(k) - len(keys[0])) / t_rest, 1),
               "rss_mb": round(peak_rss_mb("self"), 1), "worker_rss_mb": round(worker_rss, 1),
               "unique": int(len(np.unique(k)))}, sys.stdout)


# Driver ------------------------------------------------------------------------------------------
def run(cmd: list[str], env: dict | None = None) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if p.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-images", type=int, default=20000)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--peers-python", default=sys.executable, help="a Python with mosaicml-streaming and litdata")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--role", default="drive", help=argparse.SUPPRESS)
    p.add_argument("--fmt", default="", help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--decoder", default="pil", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.work = args.work.resolve()
    if args.role == "read":
        return read(args)
    if args.role.startswith("write-"):
        kind, raw = args.role[len("write-"):].split("-")
        return (write_mds if kind == "mds" else write_litdata)(args.work, raw == "raw")

    args.work.mkdir(parents=True, exist_ok=True)
    write_source(args.work, args.num_images)
    gandist = [sys.executable, "-m", "gandist", "shards", "make", "--from", str(args.work / "images.npy"), "--labels",
               str(args.work / "labels.npy"), "--no-progress"]
    env = {"PYTHONPATH": str(REPO)}
    for fmt, extra in (("jpg", ["--format", "jpg", "--jpg-quality", "90"]), ("blocks", ["--format", "blocks"])):
        if not (args.work / fmt / "manifest.json").exists():
            run([*gandist, *extra, "--out", str(args.work / fmt)], env)
    for role, d in (("write-mds-jpeg", "mds-jpeg"), ("write-mds-raw", "mds-raw"), ("write-litdata-jpeg", "litdata-jpeg"),
                    ("write-litdata-raw", "litdata-raw")):
        if not (args.work / d).exists():
            run([args.peers_python, __file__, "--work", str(args.work), "--role", role])
    readers = [("gandist-jpg", "jpg", sys.executable, "pil"), ("gandist-jpg", "jpg", sys.executable, "auto"),
               ("mds-jpeg", "mds-jpeg", args.peers_python, "pil"), ("litdata-jpeg", "litdata-jpeg", args.peers_python, "pil"),
               ("gandist-blocks", "blocks", sys.executable, "-"), ("mds-raw", "mds-raw", args.peers_python, "-"),
               ("litdata-raw", "litdata-raw", args.peers_python, "-")]
    rows = []
    for fmt, d, python, decoder in readers:
        out = run([python, __file__, "--work", str(args.work), "--role", "read", "--fmt", fmt, "--dir", str(args.work / d),
                   "--workers", str(args.workers), "--batch", str(args.batch), "--decoder", decoder], env)
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(f"peers: {fmt:15s} {decoder:5s} first batch {row['first_batch_s']:6.2f} s  {row['images_per_s']:8.0f} images/s  "
              f"RSS {row['rss_mb']:5.0f} MB (largest worker {row['worker_rss_mb']:4.0f} MB)  "
              f"{row['unique']}/{row['images']} unique", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "num_images": args.num_images,
                                        "workers": args.workers, "batch": args.batch, "cpus": os.cpu_count(),
                                        "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
