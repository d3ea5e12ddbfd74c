"""Labelled shards read whole into memory for the classifiers (``gandist classify``, the
semi-supervised D's test accuracy), refused with the path named when a sample has no label."""

from __future__ import annotations

from pathlib import Path

from gandist.classification.training import LabelledImages
from gandist.config import DataConfig
from gandist.data import DatasetInfo, read_all, resolve_dataset
from gandist.errors import BadInputError


def load_labelled(path: Path, what: str, *, image_size: int = 0, channels: int = 0) -> tuple[LabelledImages, DatasetInfo]:
    """The images and labels of the shards at ``path`` (converted to ``image_size`` x
    ``channels`` when set) and their dataset info; ``what`` names the source in errors
    (``--train``, ``--test``)."""
    info = resolve_dataset(DataConfig(path=str(path)))
    if not info.num_classes:
        raise BadInputError(f"{what} {path}: the shards have no class labels (manifest lists no classes); classify needs labelled data")
    images, labels = read_all(info, image_size=image_size, channels=channels)
    if (labels < 0).any():
        raise BadInputError(f"{what} {path}: {int((labels < 0).sum())} samples have no label")
    return LabelledImages(images, labels, list(info.class_names), f"{what} {path}"), info
