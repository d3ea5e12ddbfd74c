"""``gandist classify``: train classifiers on real, synthetic and mixed shards and report test
accuracy on a held-out real split, for the protocols real, cas, mix and lowdata."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from gandist.errors import BadInputError


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "classify",
        help="measure whether synthetic images help a classifier (real, CAS, mix, low-data protocols)",
        description="Train a small ResNet on shards and report accuracy on a held-out real test split. Protocols: "
        "real (train real), cas (train synthetic only: Classification Accuracy Score), mix (real + synthetic at --synthetic-ratio), "
        "lowdata (real subsets at --real-fraction, alone / with classical augmentation / with the synthetic set). "
        "Writes OUT/classify_report.{md,json,png}, OUT/tb/ and OUT/domain_classifier.safetensors (from protocol real).",
    )
    p.add_argument("--train", type=Path, required=True, help="real training shards (directory with manifest.json)")
    p.add_argument("--test", type=Path, required=True, help="held-out real test shards (read once per classifier, for the report)")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val", type=Path, default=None,
                     help="real validation shards, disjoint from --train and --test (e.g. shards make --builtin NAME --split val): "
                          "each classifier keeps its weights that score best on them")
    val.add_argument("--val-fraction", type=float, default=0.0,
                     help="carve this class-stratified, seeded fraction of --train out as the validation split instead (e.g. 0.1)")
    p.add_argument("--synthetic", type=Path, default=None, help="labelled synthetic shards (from gandist synth); needed by cas and mix")
    p.add_argument("--protocol", default="real", help="comma-separated protocols: real, cas, mix, lowdata (default real)")
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--seeds", type=int, default=3, help="training runs per setting, seeds 0..N-1 (default 3)")
    p.add_argument("--real-fraction", type=_floats, default=[0.05, 0.1, 0.25, 1.0], help="lowdata: fractions of the real training set (default 0.05,0.1,0.25,1)")
    p.add_argument("--synthetic-ratio", type=_floats, default=[0.0, 0.5, 1.0, 2.0], help="mix: synthetic images per real image (default 0,0.5,1,2)")
    # No argparse choices: listing them would import torch for every `gandist --help`;
    # build_classifier rejects an unknown name with the allowed values.
    p.add_argument("--arch", default="resnet8", help="classifier: resnet8 (default), resnet14, resnet20, resnet20w32")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per training run (default 300)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate (default 0.05)")
    p.add_argument("--semisup-run", type=Path, action="append", default=[], metavar="RUN_DIR",
                   help="lowdata: a semi-supervised GAN run (train.objective=semisup on --train); its discriminator's test accuracy "
                        "is reported as the 'semi-supervised GAN' line at its labelled fraction (repeat for several seeds/fractions)")
    p.add_argument("--device", default="", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (on a terminal a bar over all classifiers' steps with ETA; elsewhere a line every 30 s)")
    p.set_defaults(func=run)


def _notice_resized(what: str, path: Path, info, size: int, channels: int) -> None:
    """Say when images were converted to the --train images' size or channel count."""
    if (info.image_size, info.channels) != (size, channels):
        print(f"notice: {what} {path} holds {info.channels} x {info.image_size} x {info.image_size} images, --train "
              f"{channels} x {size} x {size}: resized to {channels} x {size} x {size} for training and testing",
              file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from gandist.classification.classifiers import available_classifiers
    from gandist.classification.labelled_shards import load_labelled
    from gandist.classification.protocols import ProtocolPlan, carve_validation, run_protocols
    from gandist.classification.report import write_report
    from gandist.classification.training import ClassifierSettings, accuracy, save_classifier, settings_dict

    if args.arch not in available_classifiers():
        raise BadInputError(f"--arch: unknown classifier {args.arch!r}; allowed values: {', '.join(available_classifiers())}")
    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    plan = ProtocolPlan(protocols=protocols, seeds=args.seeds, real_fractions=args.real_fraction, synthetic_ratios=args.synthetic_ratio)
    plan.validate(args.synthetic is not None)
    if args.semisup_run and "lowdata" not in protocols:
        raise BadInputError("--semisup-run: its accuracy is a line of the low-data study; add --protocol lowdata")
    if args.steps < 1 or args.batch_size < 1 or args.lr <= 0:
        raise BadInputError("--steps, --batch-size must be >= 1 and --lr > 0")
    settings = ClassifierSettings(arch=args.arch, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    if not 0.0 <= args.val_fraction < 1.0:
        raise BadInputError(f"--val-fraction: must be in [0, 1) (got {args.val_fraction})")
    train, train_info = load_labelled(args.train, "--train")
    size, channels = train.images.shape[-1], train.images.shape[1]
    test, test_info = load_labelled(args.test, "--test", image_size=size, channels=channels)
    _notice_resized("--test", args.test, test_info, size, channels)
    val, val_source = None, ""
    if args.val is not None:
        val, val_info = load_labelled(args.val, "--val", image_size=size, channels=channels)
        _notice_resized("--val", args.val, val_info, size, channels)
        val_source = str(args.val)
    elif args.val_fraction:
        train, val = carve_validation(train, args.val_fraction)
        val_source = f"{args.val_fraction:g} of {args.train} (class-stratified, seeded)"
    synthetic = None
    if args.synthetic is not None:
        # A GAN trained at another size than the data's (data.image_size) makes images of that
        # size: they are converted to the real images' size, and the user is told.
        synthetic, synthetic_info = load_labelled(args.synthetic, "--synthetic", image_size=size, channels=channels)
        _notice_resized("--synthetic", args.synthetic, synthetic_info, size, channels)
    num_classes = train_info.num_classes
    if args.semisup_run:
        from gandist.semisup.study import check_runs

        check_runs(args.semisup_run, train_info)  # fail before the study's training, not after
    print(f"train {len(train)} real, " + (f"val {len(val)} real, " if val is not None else "") + f"test {len(test)} real"
          + (f", synthetic {len(synthetic)}" if synthetic else "")
          + f" images ({channels} x {size} x {size}, {num_classes} classes); classifier {args.arch}, {args.steps} steps", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(args.out / "tb"))

    def on_result(protocol: str, setting: str, seed: int, acc: float) -> None:
        writer.add_scalar(f"classify/{protocol}/{setting}", acc, seed)

    start = time.perf_counter()
    report, domain_model = run_protocols(train, test, synthetic, plan, settings, num_classes=num_classes, device=device,
                                         log=lambda s: print(s, flush=True), on_result=on_result, progress=not args.no_progress,
                                         val=val)
    if args.semisup_run:
        from gandist.semisup.study import semisup_lowdata

        report["lowdata"].update(semisup_lowdata(args.semisup_run, test, train_info, log=lambda s: print(s, flush=True)))
    for protocol, settings_ in report.items():
        for setting, r in settings_.items():
            writer.add_scalar(f"classify_mean/{protocol}/{setting}", r["accuracy_mean"], 0)
    writer.close()
    meta = {
        "command": "gandist " + shlex.join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name in ("gandist", "__main__.py") else "",
        "train": str(args.train), "test": str(args.test), "synthetic": str(args.synthetic) if args.synthetic else None,
        "val": val_source or None, "num_val": len(val) if val is not None else 0,
        "num_train": len(train), "num_test": len(test), "num_synthetic": len(synthetic) if synthetic else 0,
        "seeds": args.seeds, "protocols": protocols, "semisup_runs": [str(r) for r in args.semisup_run], **settings_dict(settings), "device": str(device),
        "elapsed_sec": round(time.perf_counter() - start, 1),
    }
    if domain_model is not None:
        save_classifier(domain_model, args.out / "domain_classifier.safetensors", arch=args.arch, channels=channels, image_size=size,
                        class_names=train.class_names, train_source=str(args.train), test_accuracy=accuracy(domain_model, test, device))
    write_report(args.out, report, meta)
    print((args.out / "classify_report.md").read_text())
    print(f"wrote {args.out / 'classify_report.md'}, .json, .png" + (", domain_classifier.safetensors" if domain_model is not None else ""))
    return 0
