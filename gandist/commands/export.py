"""``gandist export --run-dir DIR --out g.safetensors``: the EMA generator of a run as safetensors
plus a JSON of its model config, for ``gandist sample`` and for use outside gandist."""

from __future__ import annotations

import argparse

from gandist.errors import EXIT_OK


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a run's EMA generator as .safetensors plus its model config (.json)",
        description=(
            "Write the EMA generator of the newest good checkpoint of a run as a safetensors file "
            "(model config in its metadata) and the same config beside it as OUT with .json. "
            "`gandist sample --generator OUT` samples from it."
        ),
    )
    p.add_argument("--run-dir", required=True, help="run directory, its ckpt/ folder, or one ckpt/step_* folder")
    p.add_argument("--out", required=True, help="output file, e.g. g.safetensors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gandist.generators import export_generator

    if not args.out.endswith(".safetensors"):
        from gandist.errors import BadInputError

        raise BadInputError(f"--out: {args.out} must end in .safetensors")
    out = export_generator(args.run_dir, args.out)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return EXIT_OK
