"""``gandist export --run-dir DIR --out OUT``: the EMA generator of a run as a folder that Hugging
Face tooling reads (``model.safetensors``, ``config.json``, ``README.md`` model card), or, with
an ``--out`` ending in ``.safetensors``, as the older single file plus ``.json``."""

from __future__ import annotations

import argparse

from gandist.errors import EXIT_OK


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a run's EMA generator as a folder: model.safetensors, config.json, README.md model card",
        description=(
            "Write the EMA generator of the newest good checkpoint of a run as a folder OUT with model.safetensors "
            "(the model config also in its metadata), config.json and a README.md model card (data set, steps, "
            "image size, classes, and the FID of the run's eval.json and the CAS of --classify-report, each with what "
            "measured it). An OUT ending in .safetensors writes the older form: OUT plus OUT with .json. "
            "`gandist sample --generator OUT` and gandist.load_generator(OUT) read both."
        ),
    )
    p.add_argument("--run-dir", required=True, help="run directory, its ckpt/ folder, or one ckpt/step_* folder")
    p.add_argument("--out", required=True, help="output folder (or a file ending in .safetensors for the older form; "
                   "with --classifier: a .safetensors file)")
    p.add_argument("--classify-report", default=None, help="gandist classify output folder (or its classify_report.json): its CAS goes into the model card")
    p.add_argument("--classifier", action="store_true",
                   help="semi-supervised runs: write the discriminator as a classifier (the format of gandist classify's "
                        "domain_classifier.safetensors, for synth --filter-classifier and eval metrics.classifier=)")
    p.add_argument("--test", default=None, help="with --classifier: labelled shards whose test accuracy is recorded in the file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gandist.errors import BadInputError
    from gandist.generators import EXPORT_CARD, EXPORT_CONFIG, EXPORT_WEIGHTS, export_folder, export_generator

    if args.test and not args.classifier:
        raise BadInputError("--test: only with --classifier")
    if args.classifier:
        if not args.out.endswith(".safetensors"):
            raise BadInputError(f"--out: {args.out}: with --classifier the output is one file ending in .safetensors")
        from gandist.semisup.classifier import export_classifier

        out = export_classifier(args.run_dir, args.out, args.test)
        print(f"wrote {out} (the discriminator as a classifier)")
        return EXIT_OK
    if Path(args.out).suffix and not args.out.endswith(".safetensors"):
        raise BadInputError(f"--out: {args.out}: a file must end in .safetensors (or give a folder name without a suffix)")
    if args.out.endswith(".safetensors"):
        out = export_generator(args.run_dir, args.out)
        print(f"wrote {out} and {out.with_suffix('.json')}")
        return EXIT_OK
    out = export_folder(args.run_dir, args.out, classify_report=args.classify_report)
    print(f"wrote {out}/: {EXPORT_WEIGHTS}, {EXPORT_CONFIG}, {EXPORT_CARD}")
    return EXIT_OK
