"""A trained semi-supervised D as an image classifier: loaded from a run, tested on labelled
shards (``gandist eval --test``), exported in ``gandist classify``'s classifier format
(``gandist export --classifier``), so that ``synth --filter-classifier`` and
``eval metrics.classifier=`` take it like a domain classifier."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from gandist.errors import BadInputError


def is_semisup_run(run_dir_or_ckpt: str | os.PathLike, log: Callable[[str], None] = print) -> bool:
    from gandist.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(Path(run_dir_or_ckpt), log=log)
    return json.loads((ckpt / "model.json").read_text()).get("objective") == "semisup"


def load_discriminator(run_dir_or_ckpt: str | os.PathLike, log: Callable[[str], None] = print) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(D in eval mode on CPU, info: model_name, spec, num_classes, class_names, step) from the
    newest good checkpoint of a semi-supervised run."""
    from gandist.checkpoint import load_tensor_file, read_manifest, resolve_checkpoint
    from gandist.models import ModelSpec
    from gandist.semisup.heads import LEGACY_HEAD
    from gandist.semisup.model import build_semisup_discriminator

    ckpt = resolve_checkpoint(Path(run_dir_or_ckpt), log=log)
    info = json.loads((ckpt / "model.json").read_text())
    if info.get("objective") != "semisup":
        raise BadInputError(
            f"--run-dir: {run_dir_or_ckpt} is not a semi-supervised run (trained with train.objective=gan); "
            "its discriminator has no class head"
        )
    spec = ModelSpec(**info["spec"])
    num_classes = int(info["semisup"]["num_classes"])
    head = info["semisup"].get("head", LEGACY_HEAD)  # runs from before the choice were all flatten
    d = build_semisup_discriminator(info["model_name"], spec, num_classes, head=head)
    d.load_state_dict(load_tensor_file(ckpt / "model.pt")["D"])
    d.eval()
    return d, {"model_name": info["model_name"], "spec": spec, "num_classes": num_classes,
               "class_names": list(info["semisup"]["class_names"]), "head": head, "step": read_manifest(ckpt)["step"]}


def load_test_set(path: str | os.PathLike, spec, class_names: list[str], what: str = "--test"):
    """Labelled shards at the D's image size and channels, checked against the run's classes."""
    from gandist.classification.labelled_shards import load_labelled

    test, _ = load_labelled(Path(path), what, image_size=spec.image_size, channels=spec.channels)
    if test.class_names and list(test.class_names) != list(class_names):
        raise BadInputError(f"{what} {path}: class names {test.class_names} differ from the run's {class_names}")
    return test


def discriminator_accuracy(run_dir: str | os.PathLike, test_path: str | os.PathLike, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Test accuracy of a semi-supervised run's D on labelled shards, as a JSON-ready record."""
    from gandist.classification.training import accuracy

    d, info = load_discriminator(run_dir, log=log)
    test = load_test_set(test_path, info["spec"], info["class_names"])
    return {"step": info["step"], "test": str(test_path), "num_test": len(test), "accuracy": accuracy(d, test)}


def export_classifier(run_dir: str | os.PathLike, out: str | os.PathLike, test_path: str | os.PathLike | None = None,
                      log: Callable[[str], None] = print) -> Path:
    """Write the D of a semi-supervised run as a ``gandist-classifier-v1`` safetensors file
    (test accuracy in its metadata when ``test_path`` is given, else NaN)."""
    from gandist.classification.training import accuracy, save_classifier
    from gandist.semisup.model import classifier_arch, classifier_metadata

    d, info = load_discriminator(run_dir, log=log)
    acc = accuracy(d, load_test_set(test_path, info["spec"], info["class_names"])) if test_path else float("nan")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_classifier(d, out, arch=classifier_arch(info["model_name"]), channels=info["spec"].channels,
                    image_size=info["spec"].image_size, class_names=info["class_names"],
                    train_source=f"semi-supervised GAN run {run_dir} (step {info['step']})", test_accuracy=acc,
                    extra_meta=classifier_metadata(info["model_name"], info["spec"], info["head"]))
    return out
