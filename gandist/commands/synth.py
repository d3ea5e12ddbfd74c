"""``gandist synth``: a class-balanced, labelled synthetic dataset from a run's EMA generator,
written as shards with a manifest (the format of ``gandist shards make``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

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
    p.add_argument("--min-confidence", type=float, default=0.9, help="with --filter-classifier: minimum probability of the conditioning class (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--batch-size", type=int, default=250, help="images per forward pass per rank (default 250)")
    p.add_argument("--shard-size", type=int, default=1000, help="images per shard (default 1000)")
    p.add_argument("--format", choices=["png", "blocks"], default="png", help="sample format in the shards (default png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (on a terminal a bar with ETA; elsewhere a line every 30 s)")
    p.set_defaults(func=run)


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
    if not 0.0 <= args.min_confidence <= 1.0:
        raise BadInputError(f"--min-confidence: must be in [0, 1] (got {args.min_confidence})")
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
        opts = SynthOptions(per_class=args.per_class, truncation=args.truncation, seed=args.seed, batch_size=args.batch_size,
                            min_confidence=args.min_confidence if classifier is not None else 0.0)
        images, labels, stats = generate_labelled(G, spec.num_classes, spec.z_dim, opts, group, classifier=classifier,
                                                  classifier_image_size=clf_size, log=log,
                                                  progress=not args.no_progress)
        data_size = int(info.get("data_image_size") or spec.image_size)
        if data_size != spec.image_size:
            # The run resized its data (data.image_size): write images the size of the real data,
            # so they mix with it and a classifier tests on what it trained on.
            import torch

            from gandist.metrics.extractors import resize_uint8

            log(f"synth: the generator makes {spec.image_size}x{spec.image_size} images; its training data is "
                f"{data_size}x{data_size}: writing {data_size}x{data_size}")
            images = resize_uint8(torch.from_numpy(images), data_size).numpy()
        if group.is_main:
            extra = {
                "synthetic": True,
                "generator": str(args.run_dir),
                "generator_step": info.get("step"),
                "model_name": info.get("model_name"),
                "truncation": args.truncation,
                "seed": args.seed,
                "filter_classifier": str(args.filter_classifier) if args.filter_classifier else None,
                "min_confidence": opts.min_confidence if classifier is not None else None,
                "filter_stats": stats,
            }
            samples = ((f"{i:07d}", images[i], int(labels[i])) for i in range(len(labels)))
            write_shards(samples, args.out, class_names=class_names, shard_size=args.shard_size, fmt=args.format,
                         num_samples_hint=len(labels), command="gandist " + shlex.join(sys.argv[1:]), extra=extra)
            print(f"wrote {len(labels)} synthetic images ({args.per_class} per class, {spec.num_classes} classes) to {args.out}"
                  + (f"; filter kept {stats['accepted']}/{stats['generated']}" if classifier is not None else ""))
            print(json.dumps({"num_samples": len(labels), **{k: v for k, v in extra.items() if k != "synthetic"}}, default=str))
        group.barrier()
    return 0
