"""Overhead of gandist's training step against a plain PyTorch GAN loop, in one process (the
loops are ``gandist.perf.loops``; ``gandist bench`` runs them for every model and engine).

Both loops train the same models (same init), on the same batch of images already in memory,
with Adam, the non-saturating loss, a frozen D in the G step and an EMA of G; the plain loop
calls the modules and optimizers directly (no Accelerate, no engine). The two are timed in
alternating rounds so that machine noise hits both alike; the ratio is gandist / plain
images per second (>= 0.95 is the target).

    python benchmarks/train_step.py                       # CPU, the built-in digits' shape
    python benchmarks/train_step.py --device cuda --image-size 64 --width 64 --batch 256
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gandist.models import ModelSpec  # noqa: E402
from gandist.perf.loops import gandist_loop, plain_loop, synthetic_batch  # noqa: E402


def time_steps(step, n: int, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="dcgan")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--precision", default="no", choices=["no", "bf16", "fp16"])
    p.add_argument("--steps", type=int, default=20, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, help="append a markdown result block to this file")
    args = p.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    spec = ModelSpec(args.image_size, args.channels, 10, 64, args.width, args.width)
    # Both loops get the batch already on the device (a loader's copy is not what is compared).
    images, labels = synthetic_batch(args.batch, spec, args.device)

    import tempfile

    from accelerate import Accelerator

    with tempfile.TemporaryDirectory() as tmp:
        accelerator = Accelerator(cpu=args.device == "cpu", mixed_precision="no")
        runners = {"plain": plain_loop(args.model, spec, images, labels, args.device, args.precision).step,
                   "gandist": gandist_loop(args.model, spec, args.batch, "ddp", args.precision, Path(tmp), accelerator,
                                           images=images, labels=labels).step}
        for step in runners.values():  # warm-up: allocator, cudnn autotune, lazy init
            time_steps(step, 3, args.device)
        rates: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.rounds):
            for name, step in runners.items():
                rates[name].append(args.steps * args.batch / time_steps(step, args.steps, args.device))

    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["gandist"] / med["plain"]
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    lines = [
        f"## train_step benchmark, {datetime.date.today()} on {device_name}",
        f"command: `python benchmarks/train_step.py {' '.join(sys.argv[1:])}`",
        f"model {args.model} {args.channels}x{args.image_size}x{args.image_size}, width {args.width}, batch {args.batch}, "
        f"precision {args.precision}, torch {torch.__version__}; median of {args.rounds} rounds x {args.steps} steps",
        "",
        "| loop | images/s (median) | rounds |",
        "| --- | --- | --- |",
        *[f"| {k} | {med[k]:,.0f} | {', '.join(f'{r:,.0f}' for r in rates[k])} |" for k in runners],
        "",
        f"ratio gandist / plain: **{ratio:.3f}** (target >= 0.95)",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
