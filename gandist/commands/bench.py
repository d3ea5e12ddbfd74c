"""``gandist bench``: images/s, memory and MFU of gandist's step (ddp fp32/bf16, zero-1/2 bf16)
against a plain PyTorch loop of the same G and D, for every registered model, and the input
pipeline (block shards, device cache) against in-memory batches. One process, one run: the
printed ratios come from figures measured side by side. See ``gandist.perf.bench``."""

from __future__ import annotations

import argparse
import shlex
import sys

from gandist.errors import EXIT_OK, BadInputError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure gandist's training step against a plain PyTorch loop (images/s, memory, MFU)",
        description=(
            "Time gandist's training step under each engine and precision against a plain PyTorch loop of the "
            "same G and D, in alternating rounds in one process, for every registered model (and biggan at "
            "64 and 128 when registered, --biggan-sizes); then the same step fed from block shards and from the device cache "
            "against in-memory batches. Writes benchmarks/results/<date>-<device>.json (or --out) and prints "
            "the ratios."
        ),
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="where to run (default: cuda when torch sees a GPU)")
    p.add_argument("--quick", action="store_true",
                   help=f"a first ratio in about a minute: {QUICK_MODEL} only, {' and '.join(QUICK_VARIANTS)}, no pipeline "
                        "comparison (options given explicitly still apply)")
    p.add_argument("--models", type=_csv, default=None, help="comma-separated model names (default: every registered model)")
    p.add_argument("--image-size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--biggan-sizes", type=_csv, default=["64", "128"],
                   help="further image sides biggan is measured at (default 64,128; '' for none)")
    p.add_argument("--width", type=int, default=64, help="model.g_width and model.d_width (default 64)")
    p.add_argument("--batch", type=int, default=0, help="images per step (default: 256 on cuda, 64 on cpu)")
    p.add_argument("--steps", type=int, default=0, help="steps per timed round (default: 20 on cuda, 5 on cpu)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per variant, taken in turns (default 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (default 3)")
    p.add_argument("--variants", type=_csv, default=None, help="comma-separated subset of: " + ", ".join(_variants()))
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="torch.compile in ddp_bf16_fast (auto: on cuda only)")
    p.add_argument("--no-pipeline", action="store_true", help="skip the block shards / device cache comparison")
    p.add_argument("--pipeline-model", default="dcgan", help="model of the pipeline comparison (default dcgan)")
    p.add_argument("--pipeline-precision", choices=["fp32", "bf16"], default="bf16", help="precision of the pipeline comparison")
    p.add_argument("--pipeline-images", type=int, default=0, help="images in the pipeline's shards (default: 32 batches)")
    p.add_argument("--workers", type=int, default=0, help="loader workers for the block-shard pipeline (default 0)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: the CPUs this process may use)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak TFLOP/s for MFU (default: a table of known GPUs; none for CPUs)")
    p.add_argument("--out", default="", help="JSON file (default benchmarks/results/<date>-<device>.json)")
    p.set_defaults(func=run)


# --quick: gandist's step against the plain loop of the same G and D, at the same precision,
# on the default model: the one ratio a first user asks for, within two minutes on 2 CPU cores.
QUICK_MODEL = "dcgan"
QUICK_VARIANTS = ("plain_fp32", "ddp_fp32")


def _variants() -> list[str]:
    return ["plain_fp32", "plain_bf16", "ddp_fp32", "ddp_bf16", "ddp_bf16_fast", "zero1_bf16", "zero2_bf16"]


def run(args: argparse.Namespace) -> int:
    from gandist.models import available_models
    from gandist.perf.bench import VARIANTS, BenchArgs, format_report, run_bench, write_result

    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        args.models = args.models or [QUICK_MODEL]
        args.variants = args.variants or list(QUICK_VARIANTS)
        args.no_pipeline = True
    cuda = args.device == "cuda"
    for name, value, low in (("--image-size", args.image_size, 8), ("--width", args.width, 8), ("--rounds", args.rounds, 1),
                             ("--warmup", args.warmup, 0), ("--batch", args.batch, 0), ("--steps", args.steps, 0),
                             ("--workers", args.workers, 0), ("--threads", args.threads, 0)):
        if value < low:
            raise BadInputError(f"{name}: must be >= {low}, got {value}")
    unknown = [m for m in (args.models or []) if m not in available_models()]
    try:
        biggan_sizes = tuple(int(v) for v in args.biggan_sizes)
    except ValueError:
        raise BadInputError(f"--biggan-sizes: comma-separated integers expected, got {','.join(args.biggan_sizes)!r}") from None
    if any(s < 8 for s in biggan_sizes):
        raise BadInputError(f"--biggan-sizes: each side must be >= 8, got {','.join(args.biggan_sizes)}")
    if unknown:
        raise BadInputError(f"--models: unknown {', '.join(unknown)}; registered: {', '.join(available_models())}")
    bad = [v for v in (args.variants or []) if v not in VARIANTS]
    if bad:
        raise BadInputError(f"--variants: unknown {', '.join(bad)}; allowed: {', '.join(VARIANTS)}")
    if not args.no_pipeline and args.pipeline_model not in available_models():
        raise BadInputError(f"--pipeline-model: unknown {args.pipeline_model}; registered: {', '.join(available_models())}")
    if cuda and not torch.cuda.is_available():
        raise BadInputError("--device cuda: torch sees no GPU")
    bench_args = BenchArgs(
        device=args.device, models=args.models, image_size=args.image_size, big_sizes=biggan_sizes, width=args.width,
        batch=args.batch or (256 if cuda else 64), steps=args.steps or (20 if cuda else 5), rounds=args.rounds,
        warmup=args.warmup, variants=args.variants, compile=args.compile, pipeline=not args.no_pipeline,
        pipeline_model=args.pipeline_model, pipeline_precision=args.pipeline_precision,
        pipeline_images=args.pipeline_images, workers=args.workers, threads=args.threads,
        peak_tflops=args.peak_tflops, out=args.out,
        command="gandist " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    result = run_bench(bench_args, log=lambda m: print(m, flush=True))
    print(format_report(result))
    if args.quick:
        for row in result["rows"]:
            if row["variant"] == QUICK_VARIANTS[1]:
                print(f"{row['model']} {row['image_size']} px, batch {row['batch']}: gandist's {row['variant']} step runs at "
                      f"{row['vs_plain_same_precision']:.3f}x the images/s of a plain PyTorch loop of the same G and D "
                      f"(medians of {args.rounds} alternating rounds)")
    path = write_result(result, args.out)
    print(f"wrote {path}")
    return EXIT_OK
