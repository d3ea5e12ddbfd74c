"""``gandist shards make|merge|verify|inspect``: write, combine, check and look at WebDataset shard directories."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

from gandist.errors import DataError


def parse_bytes(text: str) -> int:
    """``1GB`` -> 10**9, ``512MiB`` -> 512 * 2**20, ``1000`` -> 1000."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GB, 500MB, 64MiB)")
    num, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    base = 1024 if binary else 1000
    return int(num * base ** " KMGT".index(unit or " "))


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("shards", help="make, merge, verify or inspect WebDataset shards",
                              description="Write image data as WebDataset tar shards + manifest.json, combine parts, check them, look at them.")
    sub = p.add_subparsers(dest="shards_cmd", metavar="make|merge|verify|inspect")
    sub.required = True

    mk = sub.add_parser("make", help="write shards from a folder, arrays, CIFAR batches or the built-in digits")
    src = mk.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="source", help="ImageFolder tree (root/class/*.png), flat image folder, .npz/.npy, or CIFAR-10/100 python batches folder")
    src.add_argument("--builtin", choices=["digits", "gray28", "colour32", "colour64"],
                     help="built-in dataset: digits (scikit-learn's 8x8 digits at 16x16), or patches of the photographs "
                          "scikit-image and scikit-learn ship: gray28 (1 x 28 x 28), colour32, colour64 (10 classes each)")
    mk.add_argument("--out", required=True, type=Path, help="output directory (created; re-running resumes)")
    mk.add_argument("--split", default="all", choices=["all", "train", "test", "fit", "val"],
                    help="built-in/CIFAR split (default all). Built-in: train/test fixed per class; train = fit + val, "
                         "val for choices, test read once for the report (CIFAR: train/test/all)")
    mk.add_argument("--labels", default="", help="labels .npy for --from images.npy")
    mk.add_argument("--format", dest="fmt", default="png", choices=["png", "jpg", "npy", "blocks"],
                    help="png/jpg: one image per sample; npy: raw arrays; blocks: --block-size images per tar member (fast for small images)")
    mk.add_argument("--shard-size", type=int, default=0, help="samples per shard (default 1000; built-in: 8 shards)")
    mk.add_argument("--maxsize", type=parse_bytes, default=0, help="also cap shard size in bytes, e.g. 1GB (default: no cap)")
    mk.add_argument("--block-size", type=int, default=256, help="images per block for --format blocks (default 256)")
    mk.add_argument("--jpg-quality", type=int, default=95)
    mk.add_argument("--resize", type=int, default=0, help="resize to N x N at write time (default: keep)")
    mk.add_argument("--center-crop", action="store_true", help="with --resize: centre-crop to a square first (else stretch)")
    mk.add_argument("--channels", type=int, default=0, choices=[0, 1, 3], help="convert to 1 or 3 channels (default: keep; RGBA/CMYK become RGB)")
    mk.add_argument("--keep-original-format", action="store_true", help="store source image files byte for byte (no re-encode)")
    mk.add_argument("--workers", type=int, default=0, help="processes that load and encode (default 0: this process)")
    mk.add_argument("--seed", type=int, default=0, help="seed of the shuffle before writing (default 0)")
    mk.add_argument("--no-shuffle", action="store_true", help="keep the sorted source order")
    mk.add_argument("--slice", default="", metavar="I/N",
                    help="write only slice I of N (0 <= I < N) of the shuffled input, e.g. one per job-array task; "
                         "combine the parts with `shards merge`")
    mk.add_argument("--no-progress", action="store_true", help="no progress bar")
    mk.set_defaults(func=run_make)

    mg = sub.add_parser("merge", help="combine parts (e.g. the slices of `make --slice`) into one shard directory",
                        description="Hard-link (or copy) the parts' shards into OUT as 000000.tar, ... and write one "
                                    "manifest.json. Parts stay as they are; running it again is harmless.")
    mg.add_argument("--out", required=True, type=Path, help="merged shard directory (may contain the parts)")
    mg.add_argument("parts", nargs="+", type=Path, metavar="PART_DIR", help="shard directories to combine")
    mg.set_defaults(func=run_merge)

    vf = sub.add_parser("verify", help="check every shard against manifest.json (sha256, counts, decoding, labels)")
    vf.add_argument("dir", type=Path)
    vf.add_argument("--workers", type=int, default=0, help="parallel processes (default: one per CPU)")
    vf.add_argument("--json", action="store_true", help="print the summary as JSON")
    vf.add_argument("--no-progress", action="store_true", help="no progress bar (on a terminal a bar with ETA; elsewhere a line every 30 s)")
    vf.set_defaults(func=run_verify)

    ins = sub.add_parser("inspect", help="counts, class histogram, image sizes, preview grid PNG")
    ins.add_argument("dir", type=Path)
    ins.add_argument("--grid", type=Path, default=None, help="preview grid PNG (default DIR/preview.png)")
    ins.add_argument("--n", type=int, default=64, help="images in the grid")
    ins.add_argument("--json", action="store_true")
    ins.set_defaults(func=run_inspect)


def run_make(args: argparse.Namespace) -> int:
    from gandist.data.builtin import write_builtin
    from gandist.data.slices import parse_slice
    from gandist.data.sources import open_source
    from gandist.data.writer import write_shards

    command = _command("make")
    if args.shard_size < 0:
        raise DataError(f"--shard-size: must be >= 1 (got {args.shard_size})")
    data_slice = parse_slice(args.slice) if args.slice else None
    if args.builtin:
        if args.shard_size or args.maxsize or args.resize or args.keep_original_format:
            raise DataError("--builtin takes only --out, --split, --format, --seed, --slice (the built-in layout is fixed)")
        m = write_builtin(args.builtin, args.out, split=args.split, fmt=args.fmt, seed=args.seed,
                          progress=not args.no_progress, command=command, data_slice=data_slice)
    else:
        src = open_source(args.source, labels_path=args.labels, split=args.split)
        for note in src.notes:
            print(f"shards make: note: {note}", file=sys.stderr)
        if src.num_non_image:
            print(f"shards make: skipped {src.num_non_image} non-image file(s) in {args.source}", file=sys.stderr)
        items = src.keyed(None if args.no_shuffle else args.seed)
        extra = {"source": str(args.source), "source_kind": src.kind, "seed": None if args.no_shuffle else args.seed,
                 "split": args.split, "num_non_image_skipped": src.num_non_image}
        if data_slice is not None:
            # Cut after the shuffle, keys from the global index: the slices partition a full make's order.
            extra["slice"] = data_slice.record(len(items))
            items = items[extra["slice"]["start"]:extra["slice"]["stop"]]
        m = write_shards(
            items, args.out, class_names=src.class_names, shard_size=args.shard_size or 1000, max_bytes=args.maxsize,
            fmt=args.fmt, jpg_quality=args.jpg_quality, block_size=args.block_size, resize=args.resize,
            center_crop=args.center_crop, keep_original_format=args.keep_original_format, channels=args.channels,
            workers=args.workers, progress=not args.no_progress, num_samples_hint=len(items), command=command,
            extra=extra,
        )
    img = m["image"]
    size = f"{img['height']}x{img['width']}x{img['channels']}" if img.get("uniform") else (
        f"{img['min_height']}..{img['max_height']} x {img['min_width']}..{img['max_width']}")
    part = f" (slice {data_slice.label})" if data_slice is not None else ""
    print(f"wrote {m['num_samples']} samples{part} in {len(m['shards'])} shard(s) ({m['sample_format']}, {size}, "
          f"{m['num_classes']} classes) to {args.out}")
    return 0


def _command(verb: str) -> str:
    """The command line as typed, for the manifest (``gandist shards <verb>`` when called from Python)."""
    if sys.argv[1:2] == ["shards"]:
        return "gandist " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f"gandist shards {verb}"


def run_merge(args: argparse.Namespace) -> int:
    from gandist.data.merge import merge_parts

    r = merge_parts(args.out, args.parts, command=_command("merge"))
    m = r.manifest
    print(f"merged {len(args.parts)} part(s) into {args.out}: {m['num_samples']} samples in {len(m['shards'])} shard(s) "
          f"({r.num_linked} linked, {r.num_copied} copied, {r.num_in_place} already in place)")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from gandist.data.verify import verify_dir

    r = verify_dir(args.dir, workers=args.workers, progress=not args.no_progress)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        for p in r["problems"]:
            print(p)
        for name in r["unlisted_shards"]:
            print(f"note: {name} is in {args.dir} but not in the manifest (not verified, not loaded)")
        state = "OK" if not r["problems"] else f"{len(r['problems'])} problem(s)"
        print(f"verified {r['num_shards']} shard(s), {r['num_samples']} samples in {r['seconds']:.1f}s: {state}")
    if r["problems"]:
        raise DataError(f"{args.dir}: {len(r['problems'])} problem(s), first: {r['problems'][0]}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from gandist.data.verify import inspect_dir

    grid = args.grid or (args.dir / "preview.png")
    r = inspect_dir(args.dir, grid, args.n)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"{r['root']}: {r['num_samples']} samples in {r['num_shards']} shard(s), {r['sample_format']}, "
          f"{r['num_bytes'] / 1e6:.1f} MB")
    sizes = r["shard_sizes"]
    print(f"samples per shard: min {min(sizes)}, max {max(sizes)}")
    img = r["image"]
    print("images: " + (f"{img['height']}x{img['width']}, {img['channels']} channel(s)" if img.get("uniform") else
                        f"{img['min_height']}..{img['max_height']} x {img['min_width']}..{img['max_width']}, channels {img.get('channel_counts')}"))
    if r["class_names"]:
        total = max(1, sum(r["class_counts"]))
        width = max(len(n) for n in r["class_names"])
        print(f"{len(r['class_names'])} classes:")
        for name, n in zip(r["class_names"], r["class_counts"]):
            print(f"  {name:>{width}} {n:8d} {'#' * int(round(40 * n / total))}")
    else:
        print("unlabelled")
    if r.get("command"):
        print(f"made by: {r['command']}")
    print(f"preview grid: {r['grid']}")
    return 0
