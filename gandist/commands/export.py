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
    p.add_argument("--classifier", action="store_true",
                   help="semi-supervised runs: write the discriminator as a classifier (the format of gandist classify's "
                        "domain_classifier.safetensors, for synth --filter-classifier and eval metrics.classifier=)")
    p.add_argument("--test", default=None, help="with --classifier: labelled shards whose test accuracy is recorded in the file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gandist.errors import BadInputError
    from gandist.generators import export_generator

    if not args.out.endswith(".safetensors"):
        raise BadInputError(f"--out: {args.out} must end in .safetensors")
    if args.test and not args.classifier:
        raise BadInputError("--test: only with --classifier")
    if args.classifier:
        from gandist.semisup.classifier import export_classifier

        out = export_classifier(args.run_dir, args.out, args.test)
        print(f"wrote {out} (the discriminator as a classifier)")
        return EXIT_OK
    out = export_generator(args.run_dir, args.out)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return EXIT_OK
