"""``gandist bench``: images/s, memory and MFU of gandist's training step against a plain loop.

One process and one process group. For each model configuration, every variant is built once,
warmed up, and then timed in alternating rounds (A, B, C, then C, B, A, ...), so that noise on
a shared machine hits all variants alike; a variant's figure is the median of its rounds, and
every ratio is between figures of the same run.

Variants (``--variants``): ``plain_fp32`` (the baseline: a plain PyTorch loop of the same G and
D) and ``plain_bf16``; gandist's ``ddp_fp32``, ``ddp_bf16``, ``ddp_bf16_fast`` (channels_last,
fused Adam, and ``torch.compile`` when ``--compile`` allows it) and ``zero1_bf16``/``zero2_bf16``.
The pipeline comparison (gandist ddp at ``--pipeline-precision``, one model) feeds the same
step from synthetic in-memory batches, from block shards through the streaming loader, and
from the device cache.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from gandist.models import ModelSpec, available_models
from gandist.perf.flops import count_step_flops, device_peak_tflops
from gandist.perf.loops import Loop, gandist_loop, plain_loop, synthetic_batch


@dataclass(frozen=True)
class Variant:
    name: str
    loop: str  # "plain" or "gandist"
    engine: str = ""  # ddp, zero1, zero2
    precision: str = "no"
    channels_last: bool = False
    fused_adam: bool = False
    compile: bool = False


VARIANTS = {v.name: v for v in [
    Variant("plain_fp32", "plain"),
    Variant("plain_bf16", "plain", precision="bf16"),
    Variant("ddp_fp32", "gandist", "ddp"),
    Variant("ddp_bf16", "gandist", "ddp", "bf16"),
    Variant("ddp_bf16_fast", "gandist", "ddp", "bf16", channels_last=True, fused_adam=True, compile=True),
    Variant("zero1_bf16", "gandist", "zero1", "bf16"),
    Variant("zero2_bf16", "gandist", "zero2", "bf16"),
]}
BASELINE = "plain_fp32"
# gandist variant -> the plain loop at the same precision (the overhead comparison).
SAME_PRECISION = {"ddp_fp32": "plain_fp32", "ddp_bf16": "plain_bf16"}
PIPELINE_SOURCES = ("memory", "blocks", "device_cache")


@dataclass
class BenchArgs:
    device: str = "cpu"
    models: list[str] | None = None  # None: every registered model
    image_size: int = 32
    big_sizes: tuple[int, ...] = (64, 128)  # extra sizes for biggan, when registered
    width: int = 64
    batch: int = 64
    steps: int = 10  # per round
    rounds: int = 5
    warmup: int = 3
    variants: list[str] | None = None  # None: all
    compile: str = "auto"  # auto: on cuda only
    pipeline: bool = True
    pipeline_model: str = "dcgan"
    pipeline_precision: str = "bf16"
    pipeline_images: int = 0  # 0: 32 batches
    workers: int = 0  # loader workers for the block-shard pipeline
    threads: int = 0  # CPU threads (0: the CPUs this process may use)
    peak_tflops: float = 0.0
    out: str = ""  # JSON path; "" -> benchmarks/results/<date>-<device>.json
    command: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step: Callable[[], None], n: int, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    for _ in range(n):
        step()
    _sync(device)
    return time.perf_counter() - t


def _alternate(loops: dict[str, Loop], args: BenchArgs, device: torch.device) -> dict[str, list[float]]:
    """Images/s of each loop in each round, the loops taking turns."""
    for loop in loops.values():
        _time(loop.step, args.warmup, device)
    rates: dict[str, list[float]] = {k: [] for k in loops}
    names = list(loops)
    for r in range(args.rounds):
        # Every other round in reverse: a variant always timed right after the same other one
        # would carry that neighbour's after-effects (caches, allocator, clock) in every round.
        for name in (names if r % 2 == 0 else names[::-1]):
            rates[name].append(args.steps * args.batch / _time(loops[name].step, args.steps, device))
    return rates


def _peak_step_bytes(loop: Loop, device: torch.device) -> int | None:
    """Memory one step allocates beyond what is resident before it (CUDA only)."""
    if device.type != "cuda":
        return None
    _sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    loop.step()
    _sync(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def model_configs(args: BenchArgs) -> list[tuple[str, int]]:
    names = args.models or available_models()
    configs = [(m, args.image_size) for m in names]
    if "biggan" in names:
        configs += [("biggan", s) for s in args.big_sizes if s != args.image_size]
    return configs


def _build(v: Variant, model: str, spec: ModelSpec, args: BenchArgs, accelerator, device, tmp: Path, compile_ok: bool,
           batches=None) -> Loop:
    images, labels = synthetic_batch(args.batch, spec, device)
    if v.loop == "plain":
        return plain_loop(model, spec, images, labels, device, v.precision)
    return gandist_loop(model, spec, args.batch, v.engine, v.precision, tmp, accelerator, batches=batches, images=images,
                        labels=labels, channels_last=v.channels_last, fused_adam=v.fused_adam, compile=v.compile and compile_ok)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_bench(args: BenchArgs, log: Callable[[str], None] = print) -> dict:
    from gandist.engine.zero import end_process_group, ensure_process_group

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no GPU")
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    names = args.variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants: unknown {', '.join(unknown)}; allowed: {', '.join(VARIANTS)}")
    compile_ok = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    skipped: list[dict] = []
    if "ddp_bf16_fast" in names and not compile_ok:
        skipped.append({"what": "torch.compile in ddp_bf16_fast",
                        "reason": "--compile auto skips it on CPU (inductor's C++ build takes minutes per model on a few "
                                  "cores and small CPU kernels gain little); pass --compile on to include it"})

    # One process group for every engine (DeepSpeed needs one; DDP at one rank does not use it).
    made_group = ensure_process_group(30.0)
    try:
        return _run_models(args, names, compile_ok, skipped, device, threads, log)
    finally:
        if made_group:
            end_process_group()


def _run_models(args: BenchArgs, names: list[str], compile_ok: bool, skipped: list[dict], device: torch.device,
                threads: int, log: Callable[[str], None]) -> dict:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    load_before = os.getloadavg()[0]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gandist-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        for model, size in model_configs(args):
            spec = ModelSpec(image_size=size, channels=3, num_classes=10, z_dim=128, g_width=args.width, d_width=args.width)
            log(f"bench: {model} {size}x{size}, batch {args.batch}: {', '.join(names)}")
            loops = {n: _build(VARIANTS[n], model, spec, args, accelerator, device, tmp, compile_ok) for n in names}
            # FLOPs of one step, counted on a separate plain fp32 loop (the same math in every variant).
            flops_loop = plain_loop(model, spec, *synthetic_batch(args.batch, spec, device), device)
            flops = count_step_flops(flops_loop.step)
            params = {"G": sum(p.numel() for p in flops_loop.g.parameters()), "D": sum(p.numel() for p in flops_loop.d.parameters())}
            del flops_loop
            rates = _alternate(loops, args, device)
            med = {n: statistics.median(r) for n, r in rates.items()}
            log("  " + ", ".join(f"{n} {m:,.0f} img/s" for n, m in med.items()))
            for n, loop in loops.items():
                v = VARIANTS[n]
                peak = device_peak_tflops(device, v.precision, args.peak_tflops)
                steps_per_sec = med[n] / args.batch
                ref = SAME_PRECISION.get(n)
                rows.append({
                    "model": model, "image_size": size, "batch": args.batch, "variant": n, "loop": v.loop,
                    "engine": v.engine or "none", "precision": "bf16" if v.precision == "bf16" else "fp32",
                    "channels_last": v.channels_last, "fused_adam": v.fused_adam,
                    "compile": bool(v.compile and compile_ok), "notes": loop.notes,
                    "params_G": params["G"], "params_D": params["D"],
                    "images_per_sec": med[n], "images_per_sec_rounds": rates[n],
                    "step_ms": 1e3 / steps_per_sec,
                    "flops_per_step": flops, "tflops_per_sec": flops * steps_per_sec / 1e12,
                    "peak_tflops": peak, "mfu": flops * steps_per_sec / (peak * 1e12) if peak else None,
                    "vs_plain_fp32": med[n] / med[BASELINE] if BASELINE in med else None,
                    "vs_plain_same_precision": med[n] / med[ref] if ref in med else None,
                    "state_bytes": loop.state_bytes(), "peak_step_bytes": _peak_step_bytes(loop, device),
                })
            del loops
            _free()
        pipeline = _pipeline(args, accelerator, device, tmp, log) if args.pipeline else []
    load_after = os.getloadavg()[0]
    if device.type == "cpu":
        skipped.append({"what": "peak memory", "reason": "measured with the CUDA allocator only; null on CPU"})
        if not args.peak_tflops:
            skipped.append({"what": "MFU", "reason": "no peak FLOP/s for a CPU; pass --peak-tflops to compute it"})
    return {
        "schema": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name, "device_type": device.type, "command": args.command,
        "torch": torch.__version__, "threads": threads, "load_average": [load_before, load_after],
        "settings": {k: getattr(args, k) for k in ("batch", "width", "steps", "rounds", "warmup", "workers",
                                                    "compile", "pipeline_precision")},
        "rows": rows, "pipeline": pipeline, "skipped": skipped,
    }


def _pipeline(args: BenchArgs, accelerator, device: torch.device, tmp: Path, log) -> list[dict]:
    """The same gandist step fed from memory, from block shards and from the device cache."""
    from gandist.config import DataConfig
    from gandist.data import build_stream, resolve_dataset, write_shards

    model, size = args.pipeline_model, args.image_size
    spec = ModelSpec(image_size=size, channels=3, num_classes=10, z_dim=128, g_width=args.width, d_width=args.width)
    n = args.pipeline_images or 32 * args.batch
    gen = torch.Generator().manual_seed(1)
    imgs = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=gen).numpy()
    root = tmp / "blocks"
    write_shards([(f"{i:07d}", imgs[i], i % 10) for i in range(n)], root, class_names=[str(c) for c in range(10)],
                 shard_size=max(256, n // 4), fmt="blocks", block_size=256)
    variant = Variant(f"ddp_{args.pipeline_precision}", "gandist", "ddp", "no" if args.pipeline_precision == "fp32" else args.pipeline_precision)
    log(f"bench: pipeline, {model} {size}x{size}, {variant.name}: {', '.join(PIPELINE_SOURCES)}")
    streams, loops = [], {}
    for source in PIPELINE_SOURCES:
        batches = None
        if source != "memory":
            cfg = DataConfig(path=str(root), num_workers=args.workers, random_flip=True, device_cache=source == "device_cache")
            stream = build_stream(cfg, resolve_dataset(cfg), batch_size_per_rank=args.batch, rank=0, world_size=1, seed=0,
                                  image_size=0, channels=0, device=device)
            streams.append(stream)
            batches = iter(stream)
        loops[source] = _build(variant, model, spec, args, accelerator, device, tmp, False, batches=batches)
    rates = _alternate(loops, args, device)
    for s in streams:
        s.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    return [{"model": model, "image_size": size, "batch": args.batch, "variant": variant.name, "source": k,
             "workers": args.workers if k == "blocks" else 0, "images_per_sec": med[k], "images_per_sec_rounds": rates[k],
             "vs_memory": med[k] / med["memory"]} for k in PIPELINE_SOURCES]


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({len(os.sched_getaffinity(0))} CPUs)"
    except OSError:
        pass
    return f"{platform.machine()} CPU"


def default_out(result: dict) -> Path:
    slug = "cpu" if result["device_type"] == "cpu" else re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")
    return Path("benchmarks") / "results" / f"{result['date'][:10]}-{slug}.json"


def format_report(result: dict) -> str:
    """The run's table: one line per model and variant, ratios within this run."""
    lines = [f"gandist bench on {result['device']} (torch {result['torch']}, {result['threads']} threads, "
             f"load {result['load_average'][0]:.1f} -> {result['load_average'][1]:.1f})", ""]
    head = f"{'model':8} {'size':>4} {'variant':14} {'img/s':>10} {'spread':>13} {'vs plain fp32':>13} {'vs plain same prec':>18} {'TFLOP/s':>8} {'MFU':>6} {'peak step MB':>12}"
    lines.append(head)
    for r in result["rows"]:
        rounds = r["images_per_sec_rounds"]
        spread = f"{min(rounds):,.0f}-{max(rounds):,.0f}"
        same = f"{r['vs_plain_same_precision']:.3f}" if r["vs_plain_same_precision"] is not None else "-"
        base = f"{r['vs_plain_fp32']:.3f}" if r["vs_plain_fp32"] is not None else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        peak = f"{r['peak_step_bytes'] / 2**20:.0f}" if r["peak_step_bytes"] is not None else "-"
        lines.append(f"{r['model']:8} {r['image_size']:>4} {r['variant']:14} {r['images_per_sec']:>10,.0f} {spread:>13} "
                     f"{base:>13} {same:>18} {r['tflops_per_sec']:>8.3f} {mfu:>6} {peak:>12}")
    if result["pipeline"]:
        lines += ["", f"{'pipeline':14} {'source':13} {'img/s':>10} {'vs memory':>9}"]
        for p in result["pipeline"]:
            lines.append(f"{p['model'] + ' ' + str(p['image_size']):14} {p['source']:13} {p['images_per_sec']:>10,.0f} {p['vs_memory']:>9.3f}")
    for s in result["skipped"]:
        lines.append(f"skipped: {s['what']}: {s['reason']}")
    return "\n".join(lines)


def write_result(result: dict, out: str) -> Path:
    path = Path(out) if out else default_out(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
