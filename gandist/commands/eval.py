"""``gandist eval``: FID/KID/precision/recall (and IS, per-class FID) of a finished run's EMA generator; with ``--test``, the test accuracy of a semi-supervised run's discriminator."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from gandist.errors import BadInputError, ConfigError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="compute sample-quality metrics of a run's EMA generator",
        description="Compute FID, KID, precision/recall (and IS and per-class FID where they apply) of the EMA generator of a run "
        "against its real data (or data.path=...). Runs on all ranks in parallel under accelerate launch / torchrun.",
    )
    p.add_argument("--run-dir", type=Path, required=True, help="run directory (its config.yaml gives the data) or one ckpt/step_* folder")
    p.add_argument("--num-samples", type=int, default=0, help="generated images (default: eval.num_samples of the run's config)")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the result (default: RUN_DIR/eval.json, with --test RUN_DIR/eval_classifier.json)")
    p.add_argument("--test", type=Path, default=None,
                   help="semi-supervised runs (train.objective=semisup): report the discriminator's test accuracy on these labelled shards instead of sample metrics")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. eval.extractor=inception metrics.inception_weights=PATH data.path=TEST_SHARDS")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gandist.generators import load_generator
    from gandist.config import config_from_dict, parse_override, set_dotted
    from gandist.data import resolve_dataset
    from gandist.metrics import evaluate_generator
    from gandist.engine.process_group import ProcessGroup
    from gandist.fileio import atomic_write_text

    run_dir = args.run_dir if (args.run_dir / "config.yaml").is_file() else args.run_dir.parent.parent
    if args.test is not None:
        return run_classifier_accuracy(args, run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"--run-dir: no config.yaml in {args.run_dir} (is it a gandist run directory?)")
    data = yaml.safe_load(config_path.read_text()) or {}
    # Sections a run written by an older gandist lacks take their defaults.
    for item in args.overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value)
    cfg = config_from_dict(data).validate()
    num_samples = args.num_samples or cfg.eval.num_samples
    if num_samples < 2:
        raise BadInputError(f"--num-samples: must be >= 2 (got {num_samples})")
    with ProcessGroup(cfg.engine.timeout_minutes) as group:
        log = (lambda s: print(s, file=sys.stderr, flush=True)) if group.is_main else (lambda s: None)
        G, info = load_generator(args.run_dir, ema=True, log=log)
        G = G.to(group.device)
        dataset = resolve_dataset(cfg.data)
        result = evaluate_generator(G, cfg=cfg, dataset_info=dataset, engine=group, num_samples=num_samples,
                                    step=int(info.get("step") or 0), log=log)
        if group.is_main:
            out = args.out or run_dir / "eval.json"
            record = {"step": info.get("step"), "data": dataset.urls[0] if len(dataset.urls) == 1 else cfg.data.path or f"builtin:{cfg.data.builtin}",
                      "world_size": group.world_size, **result.to_json()}
            atomic_write_text(out, json.dumps(record, indent=2) + "\n")
            width = max(len(k) for k in result)
            print(f"metrics of {args.run_dir} (step {info.get('step')}), features: {result.extractor}, "
                  f"{result.num_fake} generated vs {result.num_real} real images")
            for k, v in result.items():
                print(f"  {k:{width}s}  {v:.6g}")
            print(f"wrote {out}")
    return 0


def run_classifier_accuracy(args: argparse.Namespace, run_dir: Path) -> int:
    """``--test``: the test accuracy of a semi-supervised run's D (one process: a test split is small)."""
    from gandist.fileio import atomic_write_text
    from gandist.semisup.classifier import discriminator_accuracy

    if args.overrides:
        raise BadInputError(f"--test: config overrides ({' '.join(args.overrides)}) do not apply to the discriminator's test accuracy")
    record = discriminator_accuracy(args.run_dir, args.test, log=lambda s: print(s, file=sys.stderr, flush=True))
    out = args.out or run_dir / "eval_classifier.json"
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"discriminator of {args.run_dir} (step {record['step']}): test accuracy {100 * record['accuracy']:.2f} % "
          f"on {record['num_test']} images of {args.test}")
    print(f"wrote {out}")
    return 0
