"""JPEG decode speed per core: Pillow as the loader used it before (full size), Pillow with DCT
scaling to the training size (``draft``), and simplejpeg, full size and scaled, in one process
on one thread, at 64, 128 and 256 px stored.

    python benchmarks/decode.py --train-size 64 --out benchmarks/results/decode_cpu.json

Each figure is the best of ``--repeats`` passes over the same encoded images, the decoders
taking turns pass by pass (a busy second process on the machine slows all of them alike).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def photo_like(size: int, n: int, seed: int = 0) -> list[bytes]:
    """``n`` JPEGs (quality 90) of smooth colour fields with noise: compress like photographs,
    unlike random pixels."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        low = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC)).astype(np.int16)
        img = np.clip(img + rng.integers(-10, 11, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def pil_full(data: bytes) -> np.ndarray:
    """The loader's decode before this benchmark: open with the JPEG plugin, load, to array."""
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
        img.load()
        return np.asarray(img)


def main() -> None:
    from gandist.data.jpeg import decode_jpeg, simplejpeg_version

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64,128,256")
    p.add_argument("--train-size", type=int, default=64, help="the size the scaled decoders decode down to")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    decoders = {"pil (before)": pil_full, "pil draft": lambda d: decode_jpeg(d, args.train_size, "pil")}
    if simplejpeg_version():
        decoders["simplejpeg"] = lambda d: decode_jpeg(d, 0, "simplejpeg")
        decoders["simplejpeg scaled"] = lambda d: decode_jpeg(d, args.train_size, "simplejpeg")
    rows = []
    for size in map(int, args.sizes.split(",")):
        images = photo_like(size, args.images)
        best = {name: float("inf") for name in decoders}
        for _ in range(args.repeats):
            for name, fn in decoders.items():
                t0 = time.perf_counter()
                for d in images:
                    fn(d)
                best[name] = min(best[name], time.perf_counter() - t0)
        base = len(images) / best["pil (before)"]
        for name, t in best.items():
            rate = len(images) / t
            rows.append({"stored_px": size, "decoder": name, "images_per_s": round(rate, 1), "vs_pil": round(rate / base, 2),
                         "out_px": int(decoders[name](images[0]).shape[0])})
            print(f"{size:4d} px -> {rows[-1]['out_px']:4d} px  {name:18s} {rate:9.0f} images/s per core  "
                  f"{rate / base:5.2f} x Pillow before", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "train_size": args.train_size,
                                        "images": args.images, "simplejpeg": simplejpeg_version(),
                                        "pillow": Image.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
