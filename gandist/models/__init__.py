"""Generator/discriminator pairs, looked up by name (``model.name``)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelSpec:
    """What a pair of networks is built for: the data's image shape and classes."""

    image_size: int
    channels: int
    num_classes: int  # 0: unconditional
    z_dim: int
    g_width: int
    d_width: int
    d_minibatch_std: bool = True
    # Fields below were added later; their defaults keep older checkpoints' model.json loading.
    d_spectral_norm: bool | None = None  # spectral norm in D; None: the model's own default
    attention_resolution: int = 0  # side of the feature map with self-attention (biggan); 0: none

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# Name -> module with ``build(spec) -> (G, D)``; imported on use, so that validating a config
# (and ``gandist --help``) does not import torch.
_REGISTRY: dict[str, str] = {
    "biggan": "gandist.models.biggan",
    "dcgan": "gandist.models.dcgan",
    "mlp": "gandist.models.mlp",
    "r3": "gandist.models.r3",
    "resnet": "gandist.models.resnet",
}

# ``model.spectral_norm_d=auto`` resolves to these: the setting each model's source trains with
# (SNGAN and BigGAN normalise D; DCGAN and R3GAN do not, R3GAN relying on R1 + R2 instead).
SPECTRAL_NORM_D_DEFAULT: dict[str, bool] = {"biggan": True, "dcgan": False, "mlp": False, "r3": False, "resnet": True}

# Models whose generator makes any side (a fully connected layer); every other model follows
# the stage rule of ``gandist.models.sizes``.
_ANY_SIZE = {"mlp"}


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def check_model_size(name: str, image_size: int, source: str = "data.image_size") -> None:
    """Refuse, with a ``ConfigError`` naming ``source`` (exit 2), an image size or attention
    resolution the model cannot build. Pure arithmetic: runs at ``--dry-run`` without torch."""
    from gandist.models.sizes import check_image_size

    if name in _ANY_SIZE:
        return
    check_image_size(name, image_size, source)


def check_attention(name: str, image_size: int, attention_resolution: int) -> None:
    """Refuse a ``model.attention_resolution`` that is no stage side of ``name`` at ``image_size``."""
    from gandist.models.sizes import check_attention_resolution

    from gandist.errors import ConfigError

    if attention_resolution and name != "biggan":
        raise ConfigError(f"model.attention_resolution: model {name!r} has no self-attention (only biggan); set it to 0")
    check_attention_resolution(name, image_size, attention_resolution)


def build_models(name: str, spec: ModelSpec) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(G, D) for ``spec``. G(z, y) -> images in [-1, 1], B x C x H x W; D(x, y) -> logits, B."""
    if name not in _REGISTRY:
        raise ValueError(f"model.name: unknown model {name!r}; allowed values: {', '.join(available_models())}")
    return importlib.import_module(_REGISTRY[name]).build(spec)


def build_generator(name: str, spec: ModelSpec) -> torch.nn.Module:
    return build_models(name, spec)[0]
