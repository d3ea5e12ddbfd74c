"""Shared pieces of the metrics/synth/classify tests: real digits shards, a quickly trained
domain classifier, and a "generator" that replays real images (a perfect generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from gandist.classification.training import ClassifierSettings, LabelledImages, save_classifier, train_classifier
from gandist.config import load_config
from gandist.data import read_all, write_builtin

REPO = Path(__file__).resolve().parents[1]


def make_digits_shards(root: Path) -> tuple[Path, Path]:
    train, test = root / "train", root / "test"
    if not (train / "manifest.json").is_file():
        write_builtin("digits", train, split="train")
        write_builtin("digits", test, split="test")
    return train, test


def make_classifier(train: Path, path: Path, steps: int = 40) -> Path:
    if not path.is_file():
        x, y = read_all(str(train))
        model = train_classifier(LabelledImages(x, y, [], "train"), 10, ClassifierSettings(steps=steps), seed=0)
        save_classifier(model, path, arch="resnet8", channels=x.shape[1], image_size=x.shape[-1], class_names=[str(i) for i in range(10)],
                        train_source=str(train), test_accuracy=float("nan"))
    return path


def eval_config(train: Path, cache: Path, classifier: Path | str = "", **extra: str):
    overrides = [
        f"data.path={train}", f"metrics.cache_dir={cache}", f"metrics.classifier={classifier}",
        "metrics.kid_subset_size=100", "metrics.kid_num_subsets=5", "metrics.batch_size=64",
        "metrics.classifier_steps=40", "log.progress=false",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_config(overrides=overrides).validate()


class ReplayGenerator(nn.Module):
    """A perfect conditional generator: G(z, y) is a real image of class y picked by z."""

    def __init__(self, images_uint8: np.ndarray, labels: np.ndarray, z_dim: int = 8):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, int(labels.max()) + 1
        self.by_class = [torch.from_numpy(images_uint8[labels == c]).float() / 127.5 - 1 for c in range(self.num_classes)]
        self.dummy = nn.Parameter(torch.zeros(()))  # evaluation asks the generator for its device

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pick = (z[:, 0].abs() * 1e4).long()
        return torch.stack([self.by_class[int(c)][int(p) % len(self.by_class[int(c)])] for c, p in zip(y, pick)])
