"""``gandist synth``: a class-balanced, labelled synthetic dataset from a run's EMA generator,
written as shards with a manifest (the format of ``gandist shards make``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from gandist.classification.filter_tuning import AUTO_THRESHOLDS, DEFAULT_TUNE_STEPS
from gandist.errors import BadInputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a labelled synthetic dataset (shards) from a trained conditional generator",
        description="Generate --per-class images of every class from the EMA generator and write them as shards with a manifest. "
        "Runs on all ranks in parallel under accelerate launch / torchrun; rank 0 writes.",
    )
    p.add_argument("--run-dir", type=Path, required=True, help="run directory, one ckpt/step_* folder, or an exported generator .safetensors")
    p.add_argument("--per-class", type=int, required=True, help="images per class")
    p.add_argument("--out", type=Path, required=True, help="output shard directory (must not hold a dataset yet)")
    p.add_argument("--truncation", type=float, default=0.0, help="truncation trick: resample latent entries with |z| above this, e.g. 0.7 (default 0: off)")
    p.add_argument("--filter-classifier", type=Path, default=None, help="domain classifier (.safetensors from gandist classify): keep only images it assigns to their class")
    p.add_argument("--min-confidence", type=_confidence, default=0.9, metavar="F|auto",
                   help="with --filter-classifier: minimum probability of the conditioning class (default 0.9); auto: the one of "
                   f"{', '.join(f'{t:g}' for t in AUTO_THRESHOLDS)} whose synthetic set trains the classifier that scores best on --val")
    p.add_argument("--val", type=Path, default=None,
                   help="with --min-confidence auto: real labelled validation shards, not the test split "
                   "(e.g. shards make --builtin NAME --split val), as in classify --val")
    p.add_argument("--tune-steps", type=int, default=DEFAULT_TUNE_STEPS,
                   help=f"with --min-confidence auto: optimizer steps of each threshold's classifier (default {DEFAULT_TUNE_STEPS}, as classify)")
    p.add_argument("--tune-seeds", type=int, default=1,
                   help="with --min-confidence auto: classifiers per threshold, their mean val accuracy chooses (default 1)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--batch-size", type=int, default=250, help="images per forward pass per rank (default 250)")
    p.add_argument("--shard-size", type=int, default=1000, help="images per shard (default 1000)")
    p.add_argument("--format", choices=["png", "blocks"], default="png", help="sample format in the shards (default png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (on a terminal a bar with ETA; elsewhere a line every 30 s)")
    p.set_defaults(func=run)


def _confidence(text: str) -> float | str:
    """``--min-confidence``: a probability, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or auto, got {text!r}") from None


def _check_tuning(args: argparse.Namespace) -> None:
    if args.min_confidence != "auto":
        if not 0.0 <= args.min_confidence <= 1.0:
            raise BadInputError(f"--min-confidence: must be in [0, 1] or auto (got {args.min_confidence})")
        if args.val is not None:
            raise BadInputError("--val: the validation split chooses --min-confidence auto; add --min-confidence auto")
        return
    if args.filter_classifier is None:
        raise BadInputError("--min-confidence auto: needs --filter-classifier (the classifier whose confidence is thresholded)")
    if args.val is None:
        raise BadInputError("--min-confidence auto: needs --val, real labelled validation shards that choose the threshold "
                            "(e.g. gandist shards make --builtin digits --split val --out data/digits-val)")
    if args.tune_steps < 1 or args.tune_seeds < 1:
        raise BadInputError(f"--tune-steps and --tune-seeds: must be >= 1 (got {args.tune_steps}, {args.tune_seeds})")


def run(args: argparse.Namespace) -> int:
    from gandist.generators import load_generator
    from gandist.data import write_shards
    from gandist.data.manifest import MANIFEST_NAME
    from gandist.engine.process_group import ProcessGroup
    from gandist.classification.synthetic import SynthOptions, generate_labelled

    if (args.out / MANIFEST_NAME).is_file():
        raise BadInputError(f"--out: {args.out} already holds a dataset ({MANIFEST_NAME}); choose a new directory")
    if args.truncation < 0:
        raise BadInputError(f"--truncation: must be >= 0 (got {args.truncation})")
    _check_tuning(args)
    if args.batch_size < 1:
        raise BadInputError(f"--batch-size: must be >= 1 (got {args.batch_size})")
    with ProcessGroup() as group:
        log = (lambda s: print(s, file=sys.stderr, flush=True)) if group.is_main else (lambda s: None)
        G, info = load_generator(args.run_dir, ema=True, log=log)
        G = G.to(group.device)
        spec = info["spec"]
        class_names = list(info.get("class_names") or [str(c) for c in range(spec.num_classes)])
        classifier, clf_size = None, 0
        if args.filter_classifier is not None:
            from gandist.classification.training import load_classifier

            classifier, clf_info = load_classifier(args.filter_classifier, group.device)
            clf_size = clf_info["image_size"]
            if clf_info["num_classes"] != spec.num_classes or clf_info["channels"] != spec.channels:
                raise BadInputError(
                    f"--filter-classifier: {args.filter_classifier} has {clf_info['num_classes']} classes and {clf_info['channels']} channels, "
                    f"the generator {spec.num_classes} and {spec.channels}"
                )
        data_size = int(info.get("data_image_size") or spec.image_size)
        if data_size != spec.image_size:
            log(f"synth: the generator makes {spec.image_size}x{spec.image_size} images; its training data is "
                f"{data_size}x{data_size}: writing {data_size}x{data_size}")

        def make(min_confidence: float):
            opts = SynthOptions(per_class=args.per_class, truncation=args.truncation, seed=args.seed, batch_size=args.batch_size,
                                min_confidence=min_confidence if classifier is not None else 0.0)
            images, labels, stats = generate_labelled(G, spec.num_classes, spec.z_dim, opts, group, classifier=classifier,
                                                      classifier_image_size=clf_size, log=log,
                                                      progress=not args.no_progress)
            if data_size != spec.image_size:
                # The run resized its data (data.image_size): write images the size of the real data,
                # so they mix with it and a classifier tests on what it trained on.
                import torch

                from gandist.metrics.extractors import resize_uint8

                images = resize_uint8(torch.from_numpy(images), data_size).numpy()
            return images, labels, stats

        tuning = None
        if args.min_confidence == "auto":
            from gandist.classification.filter_tuning import tune_min_confidence
            from gandist.classification.labelled_shards import load_labelled
            from gandist.classification.training import ClassifierSettings

            val, _ = load_labelled(args.val, "--val", image_size=data_size, channels=spec.channels)
            if list(val.class_names) != class_names:
                raise BadInputError(f"--val {args.val}: class names {val.class_names} differ from the generator's {class_names}")
            settings = ClassifierSettings(steps=args.tune_steps)
            (images, labels, stats), tuning = tune_min_confidence(make, val, spec.num_classes, settings, group,
                                                                  num_seeds=args.tune_seeds, val_name=str(args.val), log=log)
            min_confidence = tuning["chosen"]
            if group.is_main:
                scores = ", ".join(f"{c['min_confidence']:g}: " + (f"{c['val_accuracy']:.4f}" if c["val_accuracy"] is not None else "failed")
                                   for c in tuning["candidates"])
                print(f"--min-confidence auto chose {min_confidence:g} on the validation split {args.val} ({len(val)} images; "
                      f"val accuracy of a classifier trained on each threshold's synthetic set: {scores})")
        else:
            min_confidence = args.min_confidence
            images, labels, stats = make(min_confidence)
        if group.is_main:
            extra = {
                "synthetic": True,
                "generator": str(args.run_dir),
                "generator_step": info.get("step"),
                "model_name": info.get("model_name"),
                "truncation": args.truncation,
                "seed": args.seed,
                "filter_classifier": str(args.filter_classifier) if args.filter_classifier else None,
                "min_confidence": min_confidence if classifier is not None else None,
                "filter_stats": stats,
                # --min-confidence auto: each threshold's val accuracy and the one chosen (on val).
                "min_confidence_tuning": tuning,
            }
            samples = ((f"{i:07d}", images[i], int(labels[i])) for i in range(len(labels)))
            write_shards(samples, args.out, class_names=class_names, shard_size=args.shard_size, fmt=args.format,
                         num_samples_hint=len(labels), command="gandist " + shlex.join(sys.argv[1:]), extra=extra)
            print(f"wrote {len(labels)} synthetic images ({args.per_class} per class, {spec.num_classes} classes) to {args.out}"
                  + (f"; filter kept {stats['accepted']}/{stats['generated']}" if classifier is not None else ""))
            print(json.dumps({"num_samples": len(labels), **{k: v for k, v in extra.items() if k != "synthetic"}}, default=str))
        group.barrier()
    return 0
