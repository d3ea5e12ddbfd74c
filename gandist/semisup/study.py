"""Semi-supervised runs in ``gandist classify``'s low-data study: each run's D is tested on the
study's test split and reported as the "semi-supervised GAN" variant at its labelled fraction,
beside real-only, classical augmentation and real + synthetic."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from gandist.errors import BadInputError

VARIANT = "semi-supervised GAN"


def run_fraction(record: dict[str, Any]) -> float:
    """The labelled fraction of a run: its ``data.labelled_fraction``, or for ``labelled_per_class``
    the share of the shards' labelled samples it chose."""
    rule = record["rule"]
    if rule.get("labelled_per_class"):
        return round(len(record["samples"]) / max(1, record["dataset"]["num_labelled_in_shards"]), 4)
    return float(rule["labelled_fraction"])


def check_runs(run_dirs: list[Path], train_info) -> list[dict[str, Any]]:
    """The ``labelled.json`` records of the runs, after checking each is a semi-supervised run on
    the study's training shards (before any classifier of the study is trained)."""
    from gandist.semisup.labelled import LABELLED_FILE, read_record

    records = []
    for run_dir in run_dirs:
        path = Path(run_dir) / LABELLED_FILE
        if not path.is_file():
            raise BadInputError(f"--semisup-run: {run_dir} has no {LABELLED_FILE} (is it a run trained with train.objective=semisup?)")
        record = read_record(path)
        if record["dataset"]["manifest_sha256"] != train_info.manifest_sha256:
            raise BadInputError(
                f"--semisup-run: {run_dir} was trained on other shards than --train {train_info.manifest_path} "
                "(manifests differ): its accuracy would not be comparable with the study's"
            )
        records.append(record)
    return records


def semisup_lowdata(run_dirs: list[Path], test, train_info, log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Settings to add to the ``lowdata`` report: ``fraction=<f>/semi-supervised GAN`` with the
    mean and std of the D test accuracies of the runs at that fraction (one run per seed)."""
    from gandist.classification.training import accuracy
    from gandist.semisup.classifier import load_discriminator
    from gandist.semisup.validation import read_curve

    by_fraction: dict[float, list[dict[str, Any]]] = {}
    for run_dir, record in zip(run_dirs, check_runs(run_dirs, train_info)):
        d, info = load_discriminator(run_dir, log=log)
        if tuple(test.images.shape[1:]) != (info["spec"].channels, info["spec"].image_size, info["spec"].image_size):
            raise BadInputError(f"--semisup-run: {run_dir} classifies {info['spec'].channels} x {info['spec'].image_size} px images; "
                                f"--test has {tuple(test.images.shape[1:])}")
        acc = accuracy(d, test)
        fraction = run_fraction(record)
        log(f"lowdata  fraction={fraction:g}/{VARIANT} {run_dir} (seed {record['rule']['seed']}, step {info['step']}): accuracy {acc:.4f} "
            f"({len(record['samples'])} labelled of {record['dataset']['num_samples']} images)")
        by_fraction.setdefault(fraction, []).append({"run": str(run_dir), "seed": record["rule"]["seed"], "step": info["step"],
                                                     "accuracy": acc, "num_labelled": len(record["samples"]),
                                                     "num_images": record["dataset"]["num_samples"],
                                                     # D's accuracy over steps on the run's validation split (eval.val_path)
                                                     "val_curve": read_curve(run_dir)})
    settings = {}
    for fraction in sorted(by_fraction):
        runs = by_fraction[fraction]
        accs = [r["accuracy"] for r in runs]
        settings[f"fraction={fraction:g}/{VARIANT}"] = {
            "accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "accuracies": accs,
            "num_train": int(np.mean([r["num_labelled"] for r in runs])), "real_fraction": fraction, "variant": VARIANT,
            "runs": runs,
        }
    return settings
