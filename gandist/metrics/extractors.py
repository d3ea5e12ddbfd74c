"""Feature extractors behind one interface: images in, features (and class logits) out.

Two kinds, whose numbers are *not* comparable with each other (every metric is reported with the
``extractor.name`` that produced it):
- ``classifier``: the domain classifier trained by ``gandist classify`` on the real data. Works
  offline for any image size and channel count.
- ``inception``: the standard Inception-v3 FID network (torch-fidelity's port of the TF graph),
  from the optional extra ``gandist[fid]``, with weights from a local file
  (``metrics.inception_weights``). Never downloaded.
"""

from __future__ import annotations

import abc
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from gandist.errors import ConfigError

INCEPTION_WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


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
    """torch-fidelity's Inception-v3 ("inception-v3-compat", the network of the original FID):
    2048-d pool features and 1008-way logits for the Inception Score."""

    def __init__(self, weights_path: str, device: torch.device | str = "cpu"):
        if not weights_path:
            raise ConfigError(
                "metrics.inception_weights: eval.extractor=inception needs a local Inception-v3 weights file "
                f"(gandist never downloads it); fetch {INCEPTION_WEIGHTS_URL} once and set "
                "metrics.inception_weights=/path/to/weights-inception-2015-12-05-6726825d.pth"
            )
        path = Path(weights_path)
        if not path.is_file():
            raise ConfigError(
                f"metrics.inception_weights: file not found: {path} (expected the torch-fidelity Inception-v3 weights "
                f"weights-inception-2015-12-05-6726825d.pth from {INCEPTION_WEIGHTS_URL})"
            )
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise ConfigError(
                f"eval.extractor=inception needs the optional extra: pip install 'gandist[fid]' (torch-fidelity, torchvision); import failed: {e}"
            ) from None
        self.device = torch.device(device)
        self.model = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        ).to(self.device).eval()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self.name = f"inception-v3-compat-{digest}"
        self.num_features = 2048
        self.num_logits = 1008

    @torch.no_grad()
    def __call__(self, images_bchw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = images_bchw
        if x.shape[1] == 1:  # the network expects RGB
            x = x.expand(-1, 3, -1, -1)
        # torch-fidelity takes uint8 and resizes to 299 x 299 itself (bilinear, as the TF graph does).
        feats, logits = self.model(x.to(torch.uint8).contiguous())
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
