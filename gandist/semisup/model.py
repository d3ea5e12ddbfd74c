"""The semi-supervised discriminator: a model's D trunk with a K-class head instead of its one logit.

Salimans et al. (2016, section 5): D outputs K class logits l_1..l_K and the logit of
"generated" is fixed at 0, so p(real | x) = Z / (Z + 1) with Z = sum_k exp(l_k); the real/generated
logit a GAN loss needs is logsumexp_k(l_k) (``real_logit``), and the class posterior among real
classes is the softmax of l. K outputs, not K+1: the extra logit would be redundant (softmax is
invariant to a common shift).

Any registered model whose D has a ``features`` module (B x C x H x W -> B x ..., before any
minibatch-std layer and head) can be wrapped; the model's own head and minibatch-std layer are
dropped: a batch statistic in a classifier would make an image's class depend on its batch.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

GAN_D_ARCH_PREFIX = "gan-discriminator:"


class SemisupDiscriminator(nn.Module):
    """``forward(x)`` -> class logits B x K; ``forward(x, features=True)`` -> (logits, features B x F).

    ``features(x)`` and ``head`` match the interface of ``gandist classify``'s classifiers, so the
    exported network serves as a domain classifier (feature extractor, synth filter).
    """

    def __init__(self, trunk: nn.Module, num_classes: int, image_size: int, channels: int):
        super().__init__()
        self.trunk = trunk
        with torch.no_grad():  # the feature length of this trunk at this image size
            was_training = trunk.training
            self.num_features = int(trunk.eval()(torch.zeros(1, channels, image_size, image_size)).flatten(1).shape[1])
            trunk.train(was_training)
        self.head = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(self.head.weight, 0.0, 0.02)  # DCGAN init, as the trunk's own layers
        nn.init.zeros_(self.head.bias)

    def features(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return self.trunk(x_bchw).flatten(1)

    def forward(self, x_bchw: torch.Tensor, y_b: torch.Tensor | None = None, *, features: bool = False):
        # y_b is accepted (and ignored) so that code calling D(x, y) works unchanged.
        h_bf = self.features(x_bchw)
        logits_bk = self.head(h_bf)
        return (logits_bk, h_bf) if features else logits_bk


def wrap_discriminator(d: nn.Module, model_name: str, spec, num_classes: int) -> SemisupDiscriminator:
    """The semi-supervised D built from the model's D ``d`` (its ``features`` trunk)."""
    from gandist.errors import ConfigError

    trunk = getattr(d, "features", None)
    if not isinstance(trunk, nn.Module):
        raise ConfigError(
            f"train.objective=semisup: the discriminator of model.name={model_name} has no `features` module to put a class head on"
        )
    return SemisupDiscriminator(trunk, num_classes, spec.image_size, spec.channels)


def build_semisup_discriminator(model_name: str, spec, num_classes: int) -> SemisupDiscriminator:
    from gandist.models import build_models

    _, d = build_models(model_name, spec)
    return wrap_discriminator(d, model_name, spec, num_classes)


# As a gandist classifier file -----------------------------------------------------------------


def classifier_arch(model_name: str) -> str:
    """The ``arch`` a semi-supervised D is saved under in a classifier file."""
    return GAN_D_ARCH_PREFIX + model_name


def classifier_metadata(model_name: str, spec) -> dict[str, str]:
    """Extra metadata of an exported D: what rebuilding it needs beyond the classifier format's keys."""
    return {"model_spec": json.dumps(spec.to_dict())}


def build_from_classifier_metadata(meta: dict[str, Any]) -> SemisupDiscriminator:
    """The (untrained) network a classifier file with ``arch`` ``gan-discriminator:<model>`` holds."""
    from gandist.models import ModelSpec

    spec = ModelSpec(**json.loads(meta["model_spec"]))
    return build_semisup_discriminator(meta["arch"][len(GAN_D_ARCH_PREFIX):], spec, int(meta["num_classes"]))
