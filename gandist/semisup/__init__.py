"""Semi-supervised GAN (``train.objective=semisup``): D is also a K-class image classifier,
trained on a few labelled images, all the unlabelled ones and G's images.

``labelled``: the labelled subset (``labelled.json``); ``model``: the K-class discriminator;
``objective``: its losses and the D and G steps; ``classifier``: the trained D as a classifier
(test accuracy, export in ``gandist classify``'s classifier format).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable


def setup_semisup(cfg, run_dir: Path, engine, info, spec, d, log: Callable[[str], None]):
    """For ``train.objective=semisup``: (D with its class head, the objective, the dataset info
    the stream reads). The stream ignores labels (unlabelled samples are valid training images);
    the labels D learns from are those of ``labelled.json``."""
    from gandist.errors import DataError
    from gandist.semisup.labelled import prepare_labelled
    from gandist.semisup.model import wrap_discriminator
    from gandist.semisup.objective import build_objective

    if not info.num_classes:
        raise DataError(
            f"train.objective=semisup: the dataset {info.manifest_path or cfg.data.path} has no classes "
            "(its manifest lists no class names); semi-supervised training needs some labelled samples"
        )
    labelled = prepare_labelled(run_dir, info, cfg, engine, image_size=spec.image_size, channels=spec.channels, log=log)
    d = wrap_discriminator(d, cfg.model.name, spec, info.num_classes, head=cfg.model.semisup_head)
    return d, build_objective(cfg, labelled), dataclasses.replace(info, num_classes=0)


def model_info_extra(info, head: str) -> dict:
    """What ``model.json`` records of a semi-supervised run's D (its classes and head)."""
    return {"objective": "semisup",
            "semisup": {"num_classes": info.num_classes, "class_names": list(info.class_names), "head": head}}
