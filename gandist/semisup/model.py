"""The semi-supervised discriminator: a model's D trunk with a K-class head instead of its one logit.

Salimans et al. (2016, section 5): D outputs K class logits l_1..l_K and the logit of
"generated" is fixed at 0, so p(real | x) = Z / (Z + 1) with Z = sum_k exp(l_k); the real/generated
logit a GAN loss needs is logsumexp_k(l_k) (``real_logit``), and the class posterior among real
classes is the softmax of l. K outputs, not K+1: the extra logit would be redundant (softmax is
invariant to a common shift).

Any registered model whose D has a ``features`` module (B x C x H x W -> B x ..., before any
minibatch-std layer and head) can be wrapped; the model's own head and minibatch-std layer are
dropped: a batch statistic in a classifier would make an image's class depend on its batch.

What the class head reads of the trunk's B x C x H x W map (``head``):

- ``grid`` (the default): the map average-pooled to at most 4 x 4 positions. The dcgan trunk
  ends at 4 x 4 for 16, 32 and 64 px images, where this is the map itself; at 28 px it ends at
  7 x 7, whose 6,272 flattened features per class let the head memorise 10 labelled images per
  class (labelled accuracy 0.999 from step ~500, validation accuracy 0.66 on gray28).
- ``pool``: averaged over all positions (Salimans et al. pool before their dense layer). Best
  for textures, it throws away where things are: 0.89 against 0.96 on the digits' validation
  split.
- ``flatten``: the whole map, as before the choice existed (files without a recorded
  ``semisup_head`` are rebuilt so).

Measured on validation splits, docs/semisup.md.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from gandist.semisup.heads import GRID_SIDE, HEADS, LEGACY_HEAD

GAN_D_ARCH_PREFIX = "gan-discriminator:"


class SemisupDiscriminator(nn.Module):
    """``forward(x)`` -> class logits B x K; ``forward(x, features=True)`` -> (logits, features B x F).

    ``features(x)`` and ``head`` match the interface of ``gandist classify``'s classifiers, so the
    exported network serves as a domain classifier (feature extractor, synth filter).
    """

    def __init__(self, trunk: nn.Module, num_classes: int, image_size: int, channels: int, head: str = "grid"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"semi-supervised D head must be one of {HEADS}, got {head!r}")
        self.trunk = trunk
        self.head_kind = head
        with torch.no_grad():  # the feature length of this trunk at this image size
            was_training = trunk.training
            h = trunk.eval()(torch.zeros(1, channels, image_size, image_size))
            trunk.train(was_training)
        if head != "flatten" and h.dim() != 4:
            raise ValueError(f"head={head} needs a B x C x H x W feature map from the trunk, got shape {tuple(h.shape)}")
        self.num_features = int(self._read(h).shape[1])
        self.head = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(self.head.weight, 0.0, 0.02)  # DCGAN init, as the trunk's own layers
        nn.init.zeros_(self.head.bias)

    def features(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return self._read(self.trunk(x_bchw))

    def _read(self, h: torch.Tensor) -> torch.Tensor:
        """The trunk's output as the head's B x F input."""
        if self.head_kind == "pool":
            return h.mean(dim=(2, 3))
        if self.head_kind == "grid" and (h.shape[2] > GRID_SIDE or h.shape[3] > GRID_SIDE):
            h = nn.functional.adaptive_avg_pool2d(h, (min(h.shape[2], GRID_SIDE), min(h.shape[3], GRID_SIDE)))
        return h.flatten(1)

    def forward(self, x_bchw: torch.Tensor, y_b: torch.Tensor | None = None, *, features: bool = False):
        # y_b is accepted (and ignored) so that code calling D(x, y) works unchanged.
        h_bf = self.features(x_bchw)
        logits_bk = self.head(h_bf)
        return (logits_bk, h_bf) if features else logits_bk


def wrap_discriminator(d: nn.Module, model_name: str, spec, num_classes: int, head: str = "grid") -> SemisupDiscriminator:
    """The semi-supervised D built from the model's D ``d`` (its ``features`` trunk)."""
    from gandist.errors import ConfigError

    trunk = getattr(d, "features", None)
    if not isinstance(trunk, nn.Module):
        raise ConfigError(
            f"train.objective=semisup: the discriminator of model.name={model_name} has no `features` module to put a class head on"
        )
    try:
        return SemisupDiscriminator(trunk, num_classes, spec.image_size, spec.channels, head=head)
    except ValueError as e:  # e.g. a trunk that ends in a vector cannot be pooled
        raise ConfigError(f"model.semisup_head: {e} (discriminator of model.name={model_name}); set model.semisup_head=flatten") from None


def build_semisup_discriminator(model_name: str, spec, num_classes: int, head: str = "grid") -> SemisupDiscriminator:
    from gandist.models import build_models

    _, d = build_models(model_name, spec)
    return wrap_discriminator(d, model_name, spec, num_classes, head=head)


# As a gandist classifier file -----------------------------------------------------------------


def classifier_arch(model_name: str) -> str:
    """The ``arch`` a semi-supervised D is saved under in a classifier file."""
    return GAN_D_ARCH_PREFIX + model_name


def classifier_metadata(model_name: str, spec, head: str) -> dict[str, str]:
    """Extra metadata of an exported D: what rebuilding it needs beyond the classifier format's keys."""
    return {"model_spec": json.dumps(spec.to_dict()), "semisup_head": head}


def build_from_classifier_metadata(meta: dict[str, Any]) -> SemisupDiscriminator:
    """The (untrained) network a classifier file with ``arch`` ``gan-discriminator:<model>`` holds."""
    from gandist.models import ModelSpec

    spec = ModelSpec(**json.loads(meta["model_spec"]))
    head = meta.get("semisup_head", LEGACY_HEAD)
    if head not in HEADS:
        raise ValueError(f"semisup_head must be one of {HEADS}, got {head!r:.100}")
    return build_semisup_discriminator(meta["arch"][len(GAN_D_ARCH_PREFIX):], spec, int(meta["num_classes"]), head=head)
