"""Per-rank optimizer-state memory, peak memory and step time: ddp vs ZeRO-1 vs ZeRO-2, in one run.

The same DCGAN pair (default 128 px, width 96: ~31M parameters in G, ~25M in D) is trained for a
few steps under each engine in turn, inside one launch, so every figure comes from the same
processes on the same machine. Ratios are against ddp.

Optimizer state per rank counts what the optimizer owns: Adam's two moments, plus, under ZeRO,
the fp32 master partition DeepSpeed's optimizer steps on (ddp's Adam steps on the model's own
fp32 weights, so it has none). Peak memory is ``torch.cuda.max_memory_allocated`` over the whole
engine's run (weights, gradients, optimizer, activations) less what was allocated before it
started; on CPU it is not measured. A non-finite loss makes the run exit 1 (the fp16 check).

CPU (2 gloo processes, small steps)::

    python -m accelerate.commands.launch --config_file launch/cpu_2proc.yaml \\
        benchmarks/engines.py --steps 3 --batch-per-rank 2

GPU (see benchmarks/README.md for the exact command and where results go)::

    accelerate launch --config_file launch/one_node.yaml --num_processes 1 \\
        benchmarks/engines.py --device cuda --precision bf16 --out benchmarks/results/engines_h100.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gandist.config import load_config  # noqa: E402
from gandist.engine import make_accelerator  # noqa: E402
from gandist.models import ModelSpec, build_models  # noqa: E402

ENGINES = {"ddp": ["engine.kind=ddp"], "zero1": ["engine.kind=zero", "engine.zero_stage=1"],
           "zero2": ["engine.kind=zero", "engine.zero_stage=2"]}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (cuda: fail if no GPU)")
    p.add_argument("--engines", default="ddp,zero1,zero2", help="comma-separated subset of ddp, zero1, zero2")
    p.add_argument("--precision", choices=["no", "bf16", "fp16"], default="no", help="train.mixed_precision")
    p.add_argument("--image-size", type=int, default=128, help="DCGAN image side in pixels")
    p.add_argument("--width", type=int, default=96, help="model.g_width and model.d_width")
    p.add_argument("--batch-per-rank", type=int, default=0, help="images per rank per step (0: 2 on cpu, 64 on cuda)")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first (Adam state is made at the first)")
    p.add_argument("--steps", type=int, default=0, help="timed steps (0: 3 on cpu, 30 on cuda)")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here (rank zero)")
    return p.parse_args(argv)


def optimizer_state_bytes(engine, name: str) -> int:
    """Bytes the optimizer of ``name`` owns on this rank (see the module doc for what counts)."""
    if hasattr(engine, "optimizer_state_bytes"):  # ZeRO: moments + fp32 master partition
        return engine.optimizer_state_bytes(name)
    optimizer = engine._optimizers[name]  # ddp: Accelerate's wrapper around torch.optim.Adam
    optimizer = getattr(optimizer, "optimizer", optimizer)
    return sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
               if torch.is_tensor(t) and t.dim() > 0)


def gan_step(engine, spec: ModelSpec, batch: int) -> torch.Tensor:
    """One D update and one G update with the non-saturating loss on random 'real' images.
    Returns the two losses (detached)."""
    dev = engine.device
    real = torch.rand(batch, spec.channels, spec.image_size, spec.image_size, device=dev) * 2 - 1
    labels = torch.randint(0, spec.num_classes, (batch,), device=dev)
    z = torch.randn(batch, spec.z_dim, device=dev)
    g, d = engine.net("G"), engine.net("D")
    with engine.autocast():
        with torch.no_grad():
            fake = g(z, labels)
        loss_d = F.softplus(-d(real, labels).float()).mean() + F.softplus(d(fake, labels).float()).mean()
    engine.backward(loss_d, "D")
    engine.step("D")
    with engine.frozen("D") as d_frozen:
        with engine.autocast():
            loss_g = F.softplus(-d_frozen(g(z, labels), labels).float()).mean()
        engine.backward(loss_g, "G")
    engine.step("G")
    return torch.stack([loss_d.detach(), loss_g.detach()])


def measure(kind: str, args, accelerator, world_size: int) -> dict:
    from gandist.engine.ddp import DDPEngine
    from gandist.engine.zero import ZeroEngine

    batch = args.batch_per_rank
    cfg = load_config(None, [*ENGINES[kind], f"train.mixed_precision={args.precision}",
                             f"train.batch_size={batch * world_size}"]).validate(world_size)
    spec = ModelSpec(image_size=args.image_size, channels=3, num_classes=10, z_dim=128,
                     g_width=args.width, d_width=args.width)
    cuda = accelerator.device.type == "cuda"
    start_bytes = 0
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        # Whatever an earlier engine left allocated is not this engine's.
        start_bytes = torch.cuda.memory_allocated()
    torch.manual_seed(0)
    g, d = build_models("dcgan", spec)
    numel = {"G": sum(p.numel() for p in g.parameters()), "D": sum(p.numel() for p in d.parameters())}
    optimizers = {n: torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for n, m in (("G", g), ("D", d))}
    engine = DDPEngine(cfg, accelerator) if kind == "ddp" else ZeroEngine(cfg, accelerator, None)
    engine.prepare({"G": g, "D": d}, optimizers)
    nonfinite = 0
    for _ in range(args.warmup_steps):
        nonfinite += int((~torch.isfinite(gan_step(engine, spec, batch))).sum())
    times_sec = []
    for _ in range(args.steps):
        engine.barrier()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        losses = gan_step(engine, spec, batch)
        if cuda:
            torch.cuda.synchronize()
        nonfinite += int((~torch.isfinite(losses)).sum())
        times_sec.append(time.perf_counter() - start)
    mine = torch.tensor([[optimizer_state_bytes(engine, "G"), optimizer_state_bytes(engine, "D"),
                          torch.cuda.max_memory_allocated() - start_bytes if cuda else -1, statistics.median(times_sec),
                          nonfinite, getattr(engine, "skipped_steps", lambda n: 0)("G")]],
                        dtype=torch.float64, device=engine.device)
    per_rank = engine.gather(mine).cpu()  # world x 6
    del engine, g, d, optimizers
    gc.collect()
    return {
        "engine": kind, "world_size": world_size, "precision": args.precision,
        "params_G": numel["G"], "params_D": numel["D"],
        "opt_bytes_G_per_rank": per_rank[:, 0].max().item(), "opt_bytes_D_per_rank": per_rank[:, 1].max().item(),
        "peak_bytes_per_rank": per_rank[:, 2].max().item() if cuda else None,
        # The slowest rank sets the pace of a synchronous step.
        "step_sec": per_rank[:, 3].max().item(),
        "images_per_sec": batch * world_size / per_rank[:, 3].max().item(),
        # fp16: losses that were not finite, and G steps DeepSpeed skipped on gradient overflow.
        "nonfinite_losses": int(per_rank[:, 4].sum().item()),
        "skipped_steps_G": int(per_rank[:, 5].max().item()),
    }


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["engine"] == "ddp"), rows[0])
    mb = 2**20
    lines = [f"{'engine':7} {'opt G MB/rank':>14} {'opt D MB/rank':>14} {'opt total':>10} {'vs ddp':>7} "
             f"{'peak MB/rank':>13} {'vs ddp':>7} {'step ms':>9} {'vs ddp':>7} {'img/s':>9}"]
    for r in rows:
        opt = r["opt_bytes_G_per_rank"] + r["opt_bytes_D_per_rank"]
        opt_base = base["opt_bytes_G_per_rank"] + base["opt_bytes_D_per_rank"]
        peak = f"{r['peak_bytes_per_rank'] / mb:13.0f}" if r["peak_bytes_per_rank"] else f"{'n/a':>13}"
        peak_ratio = f"{r['peak_bytes_per_rank'] / base['peak_bytes_per_rank']:7.2f}" if r["peak_bytes_per_rank"] else f"{'n/a':>7}"
        lines.append(f"{r['engine']:7} {r['opt_bytes_G_per_rank'] / mb:14.1f} {r['opt_bytes_D_per_rank'] / mb:14.1f} "
                     f"{opt / mb:10.1f} {opt / opt_base:7.2f} {peak} {peak_ratio} "
                     f"{r['step_sec'] * 1e3:9.1f} {r['step_sec'] / base['step_sec']:7.2f} {r['images_per_sec']:9.1f} "
                     f"{r['nonfinite_losses']:9d}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks/engines.py: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    if args.device == "cpu" and torch.cuda.is_available():
        print("benchmarks/engines.py: a GPU is visible; pass --device cuda (gandist uses it whenever it can)", file=sys.stderr)
        return 2
    cuda = args.device == "cuda"
    args.batch_per_rank = args.batch_per_rank or (64 if cuda else 2)
    args.steps = args.steps or (30 if cuda else 3)
    kinds = [k.strip() for k in args.engines.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ENGINES]
    if unknown:
        print(f"benchmarks/engines.py: --engines: unknown {unknown}; allowed: {', '.join(ENGINES)}", file=sys.stderr)
        return 2

    first = load_config(None, ["engine.kind=ddp", f"train.mixed_precision={args.precision}"])
    # One Accelerator for all three engines: Accelerate's state is process-wide. The ZeRO engine
    # only takes the device from it (its precision is DeepSpeed's, from the generated JSON).
    accelerator = make_accelerator(first)
    from gandist.engine.zero import ensure_process_group

    ensure_process_group(first.engine.timeout_minutes)
    world_size = torch.distributed.get_world_size()
    rows = [measure(kind, args, accelerator, world_size) for kind in kinds]
    if torch.distributed.get_rank() == 0:
        gpu = torch.cuda.get_device_name() if cuda else "cpu"
        print(f"\nengines benchmark: dcgan {args.image_size}px width {args.width} "
              f"(G {rows[0]['params_G'] / 1e6:.1f}M, D {rows[0]['params_D'] / 1e6:.1f}M params), "
              f"{world_size} ranks on {gpu}, precision {args.precision}, {args.batch_per_rank} images/rank/step, "
              f"median of {args.steps} steps\n")
        print(table(rows))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"device": gpu, "args": {k: str(v) for k, v in vars(args).items()},
                                            "rows": rows}, indent=1) + "\n")
            print(f"\nwrote {args.out}")
    torch.distributed.destroy_process_group()
    # A non-finite loss fails the run: with --precision fp16 this is the GPU check of loss scaling.
    return 1 if any(r["nonfinite_losses"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
