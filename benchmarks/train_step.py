"""Overhead of gandist's training step against a plain PyTorch GAN loop, in one process.

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
import copy
import datetime
import itertools
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gandist.config import load_config  # noqa: E402
from gandist.engine import build_engine  # noqa: E402
from gandist.losses import get_loss  # noqa: E402
from gandist.models import ModelSpec, build_models  # noqa: E402
from gandist.train import Run, stop_flags, train_step  # noqa: E402
from gandist.training_state import TrainingState  # noqa: E402
from gandist.latents import LatentSampler  # noqa: E402


def make_data(n: int, spec: ModelSpec, device: str):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, spec.channels, spec.image_size, spec.image_size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, max(spec.num_classes, 1), (n,), generator=gen)
    return images, labels


def gandist_runner(args, spec, images, labels, tmp: Path):
    cfg = load_config(None, [
        f"train.batch_size={args.batch}", f"train.mixed_precision={args.precision}", "log.progress=false",
        f"model.name={args.model}",
    ]).validate()
    engine = build_engine(cfg, tmp)
    torch.manual_seed(0)
    g, d = build_models(args.model, spec)
    ema = copy.deepcopy(g).eval().requires_grad_(False)
    betas = (cfg.optim.beta1, cfg.optim.beta2)
    opts = {"G": torch.optim.Adam(g.parameters(), lr=2e-4, betas=betas), "D": torch.optim.Adam(d.parameters(), lr=2e-4, betas=betas)}
    engine.prepare({"G": g, "D": d}, opts)
    ema.to(engine.device)
    batches = itertools.cycle([(images, labels)])
    state = TrainingState(engine=engine, ema=ema, stream=None, model_info={}, config_yaml="", total_steps=10**9)
    run = Run(cfg=cfg, run_dir=tmp, engine=engine, spec=spec, state=state, batches=batches, logger=None, checkpointer=None,
              latents=LatentSampler(engine, spec.z_dim, spec.num_classes, cfg.train.seed))
    loss_fn = get_loss("nonsaturating")

    def step():
        stats = train_step(run, loss_fn)
        stop_flags(run, stats)  # the loop's per-step finite/preemption check (a .item() sync)

    return step


def plain_runner(args, spec, images, labels):
    device = torch.device(args.device)
    torch.manual_seed(0)
    g, d = build_models(args.model, spec)
    g, d = g.to(device), d.to(device)
    ema = copy.deepcopy(g).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loss_fn = get_loss("nonsaturating")
    images = images.to(device)
    y_real = labels.to(device) if spec.num_classes else None
    dtype = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def step():
        real = images.float() / 127.5 - 1  # batches arrive as uint8 in both loops
        z = torch.randn(real.shape[0], spec.z_dim, device=device)
        y = torch.randint(0, spec.num_classes, (real.shape[0],), device=device) if spec.num_classes else None
        with autocast():
            with torch.no_grad():
                fake = g(z, y)
            loss = loss_fn.d_loss(d(real, y_real).float(), d(fake, y).float())
        loss.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        d.requires_grad_(False)
        with autocast():
            loss_g = loss_fn.g_loss(d(g(z, y), y).float())
        loss_g.backward()
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        d.requires_grad_(True)
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), g.parameters()):
                p_ema.lerp_(p, 0.001)
            for b_ema, b in zip(ema.buffers(), g.buffers()):
                b_ema.copy_(b)
        torch.isfinite(loss).item()

    return step


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
    images, labels = make_data(args.batch, spec, args.device)
    # Both loops get the batch already on the device (a loader's copy is not what is compared).
    images, labels = images.to(args.device), labels.to(args.device)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runners = {"plain": plain_runner(args, spec, images, labels), "gandist": gandist_runner(args, spec, images, labels, Path(tmp))}
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
