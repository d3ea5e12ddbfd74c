"""Feature extractors behind one interface: images in, features (and class logits) out.

Two kinds, whose numbers are *not* comparable with each other (every metric is reported with the
``extractor.name`` that produced it):
- ``classifier``: the domain classifier trained by ``gandist classify`` on the real data. Works
  offline for any image size and channel count.
- ``inception``: the standard FID Inception-v3 (the TF graph's PyTorch port, built in
  ``gandist.metrics.inception`` without torchvision), with weights from a local file
  (``metrics.inception_weights``) whose sha256 is checked. Never downloaded.
"""

from __future__ import annotations

import abc
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from gandist.errors import ConfigError
from gandist.metrics.inception import NUM_CLASSES, NUM_FEATURES, load_fid_inception
from gandist.metrics.inception_file import WEIGHTS_SHA256



class FeatureExtractor(abc.ABC):
    #: Short, stable identity of the network and its weights: part of the real-statistics cache key
    #: and printed beside every number it produced.
    name: str
    #: Length of a feature vector.
    num_features: int
    #: Classes of ``logits`` (0: the extractor has no classifier head, so no IS).
    num_logits: int

    @abc.abstractmethod
    def __call__(self, images_bchw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 images B x C x H x W on ``self.device`` -> (features B x F float32, logits B x K or None)."""

    device: torch.device = torch.device("cpu")


class ClassifierExtractor(FeatureExtractor):
    """Penultimate-layer features and logits of a ``gandist classify`` domain classifier."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        from gandist.classification.training import load_classifier

        self.device = torch.device(device)
        self.model, self.info = load_classifier(path, self.device)
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
        self.name = f"classifier-{self.info['arch']}-{digest}"
        self.num_features = self.model.num_features
        self.num_logits = self.info["num_classes"]
        self.path = str(path)

    @torch.no_grad()
    def __call__(self, images_bchw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        c, size = self.info["channels"], self.info["image_size"]
        if images_bchw.shape[1] != c or images_bchw.shape[-1] != size:
            raise ConfigError(
                f"metrics.classifier: {self.path} was trained on {c} x {size} x {size} images, got {tuple(images_bchw.shape[1:])}"
            )
        x = images_bchw.float().div(127.5).sub(1.0)
        feats = self.model.features(x)
        return feats.float(), self.model.head(feats).float()


class InceptionExtractor(FeatureExtractor):
    """The FID Inception-v3 (``gandist.metrics.inception``, the TF graph of published FIDs):
    2048-d pool features and 1008-way logits for the Inception Score."""

    def __init__(self, weights_path: str, device: torch.device | str = "cpu", *, expected_sha256: str | None = WEIGHTS_SHA256):
        self.device = torch.device(device)
        self.model = load_fid_inception(weights_path, expected_sha256=expected_sha256).to(self.device)
        self.name = f"fid-inception-v3-{self.model.weights_sha256[:12]}"
        self.num_features = NUM_FEATURES
        self.num_logits = NUM_CLASSES

    @torch.no_grad()
    def __call__(self, images_bchw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # The network resizes to 299 x 299 itself (bilinear, as pytorch-fid) and takes 1 or 3 channels.
        feats, logits = self.model(images_bchw.to(self.device))
        return feats.float(), logits.float()


def build_extractor(kind: str, *, classifier_path: str, inception_weights: str, device: torch.device | str) -> FeatureExtractor:
    if kind == "inception":
        return InceptionExtractor(inception_weights, device)
    if kind == "classifier":
        return ClassifierExtractor(classifier_path, device)
    raise ConfigError(f"eval.extractor: unknown extractor {kind!r}; allowed values: classifier, inception")


def images_to_uint8(images_bchw: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 [0, 255], rounded as an image file would store it, so
    generated and real images reach the extractor through the same quantisation."""
    return images_bchw.float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def resize_uint8(images_bchw: torch.Tensor, size: int) -> torch.Tensor:
    if images_bchw.shape[-1] == size:
        return images_bchw
    x = F.interpolate(images_bchw.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)
