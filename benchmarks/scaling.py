"""Scaling on paper: data-parallel efficiency at 8, 64 and 512 GPUs from one GPU's step time.

Weak scaling (the batch per GPU stays; the global batch grows with the GPUs). Per step, DDP
all-reduces the gradients of D (in the D step) and of G (in the G step; D is frozen there, so
its gradients are not reduced twice): ``grad_bytes * (params_G + params_D)`` bytes, fp32
gradients by default (autocast keeps fp32 weights, so the gradients are fp32). A ring
all-reduce moves ``2 (N - 1) / N`` times that through each GPU's link, plus a latency term
``2 log2(N) * alpha`` (NCCL's tree for small messages; ``--latency-us``). The efficiency is
``t_step / (t_step + t_comm)`` when nothing overlaps (the lower bound) and
``t_step / max(t_step, t_comm)`` when DDP's bucketed reduction hides all of it behind the
backward pass (the upper bound). Compute per step comes from FLOPs counted with
``torch.utils.flop_counter`` (the same counter as ``gandist bench``).

    python benchmarks/scaling.py --bench benchmarks/results/2026-11-28-nvidia-h100.json   # measured step times
    python benchmarks/scaling.py --model dcgan --image-size 64 --width 64 --batch 256 --step-ms 18.3  # given
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def comm_sec(num_bytes: float, gpus: int, gbps: float, latency_us: float) -> float:
    if gpus <= 1:
        return 0.0
    bandwidth = gbps * 1e9 / 8  # bytes/s per GPU link
    return 2 * (gpus - 1) / gpus * num_bytes / bandwidth + 2 * math.log2(gpus) * latency_us * 1e-6


def model_figures(model: str, image_size: int, width: int, batch: int) -> tuple[int, int, int]:
    """(params G, params D, FLOPs of one training step), built and counted on the CPU."""
    import torch

    from gandist.models import ModelSpec
    from gandist.perf.flops import count_step_flops
    from gandist.perf.loops import plain_loop, synthetic_batch

    torch.set_num_threads(1)
    spec = ModelSpec(image_size=image_size, channels=3, num_classes=10, z_dim=128, g_width=width, d_width=width)
    loop = plain_loop(model, spec, *synthetic_batch(batch, spec, "cpu"), "cpu")
    return (sum(p.numel() for p in loop.g.parameters()), sum(p.numel() for p in loop.d.parameters()),
            count_step_flops(loop.step))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, help="a `gandist bench` JSON: every model's row of --variant")
    ap.add_argument("--variant", default="ddp_bf16", help="bench variant whose step time is used (default ddp_bf16)")
    ap.add_argument("--model", help="without --bench: model name (with --image-size, --width, --batch, --step-ms)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=256, help="images per GPU per step")
    ap.add_argument("--step-ms", type=float, help="one GPU's measured step time (ms)")
    ap.add_argument("--gpus", type=int, nargs="+", default=[8, 64, 512])
    ap.add_argument("--gbps", type=float, default=400.0, help="link bandwidth per GPU, Gbit/s (default 400)")
    ap.add_argument("--latency-us", type=float, default=5.0, help="per-hop latency of the fabric, microseconds")
    ap.add_argument("--grad-bytes", type=int, default=4, help="bytes per gradient element (4: fp32, 2: bf16 compression)")
    args = ap.parse_args()

    rows = []
    if args.bench:
        result = json.loads(args.bench.read_text())
        for r in result["rows"]:
            if r["variant"] == args.variant:
                rows.append((r["model"], r["image_size"], r["batch"], r["params_G"], r["params_D"], r["flops_per_step"],
                             r["step_ms"]))
        source = f"{args.bench} ({result['device']}, variant {args.variant})"
        if not rows:
            print(f"scaling.py: no rows of variant {args.variant} in {args.bench}", file=sys.stderr)
            return 2
    elif args.model and args.step_ms:
        pg, pd, flops = model_figures(args.model, args.image_size, args.width, args.batch)
        rows.append((args.model, args.image_size, args.batch, pg, pd, flops, args.step_ms))
        source = f"given step time {args.step_ms} ms"
    else:
        print("scaling.py: give --bench FILE, or --model with --step-ms", file=sys.stderr)
        return 2

    print(f"Weak scaling on a {args.gbps:g} Gb/s fabric ({args.latency_us:g} us latency), {args.grad_bytes}-byte gradients; "
          f"step times from {source}\n")
    head = ["model", "size", "batch/GPU", "params G+D", "MB all-reduced/step", "GFLOP/step", "FLOP/byte", "step ms"]
    head += [f"eff @{n} (no overlap - overlap)" for n in args.gpus]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for model, size, batch, pg, pd, flops, step_ms in rows:
        num_bytes = args.grad_bytes * (pg + pd)
        t = step_ms / 1e3
        cells = [model, f"{size}", f"{batch}", f"{(pg + pd) / 1e6:.1f}M", f"{num_bytes / 1e6:.1f}", f"{flops / 1e9:.1f}",
                 f"{flops / num_bytes:,.0f}", f"{step_ms:.2f}"]
        for n in args.gpus:
            c = comm_sec(num_bytes, n, args.gbps, args.latency_us)
            cells.append(f"{t / (t + c):.2f} - {t / max(t, c):.2f} ({1e3 * c:.1f} ms)")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
