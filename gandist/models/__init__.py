"""Generator/discriminator pairs, looked up by name (``model.name``)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gandist.config import Config, register_check
from gandist.errors import ConfigError, DataError
from gandist.models.sizes import check_attention_resolution, check_image_size

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


def model_spec(cfg: Config, info) -> ModelSpec:
    """The spec to build for ``cfg`` on the data ``info`` describes (a ``gandist.data.DatasetInfo``)."""
    if cfg.model.conditional and not info.num_classes:
        raise DataError(
            f"model.conditional: the dataset {info.manifest_path or cfg.data.path} has no class labels; "
            "set model.conditional=false to train an unconditional GAN"
        )
    image_size = cfg.data.image_size or info.image_size
    if not cfg.data.image_size:  # the data's own size: Config.validate could not check it
        where = info.manifest_path or cfg.data.path or "the built-in dataset"
        check_model_size(cfg.model.name, image_size, cfg.model.attention_resolution,
                         source=f"data.path {where} ({image_size}x{image_size} images)")
    spectral_norm_d = {"on": True, "off": False}.get(cfg.model.spectral_norm_d, SPECTRAL_NORM_D_DEFAULT.get(cfg.model.name))
    return ModelSpec(
        image_size=image_size,
        channels=cfg.data.channels or info.channels,
        num_classes=info.num_classes if cfg.model.conditional else 0,
        z_dim=cfg.model.z_dim,
        g_width=cfg.model.g_width,
        d_width=cfg.model.d_width,
        d_minibatch_std=cfg.model.d_minibatch_std,
        d_spectral_norm=spectral_norm_d,
        attention_resolution=cfg.model.attention_resolution,
    )


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
# Every model's D can be built either way (dcgan's and mlp's with SN is SNGAN's "standard CNN").
SPECTRAL_NORM_D_DEFAULT: dict[str, bool] = {"biggan": True, "dcgan": False, "mlp": False, "r3": False, "resnet": True}

# Models whose generator makes any side (a fully connected layer); every other model follows
# the stage rule of ``gandist.models.sizes``.
_ANY_SIZE = {"mlp"}


def available_models() -> list[str]:
    return sorted(_REGISTRY)


@register_check
def check_model_config(cfg: Config) -> None:
    """``model.name`` names a registered model, and a set ``data.image_size`` is one the model
    can make (run by ``Config.validate``, so ``--dry-run`` refuses it before torch is imported)."""
    names = available_models()
    if cfg.model.name not in names:
        raise ConfigError(f"model.name: unknown model {cfg.model.name!r}; allowed values: {', '.join(names)}")
    if cfg.model.attention_resolution and cfg.model.name != "biggan":
        raise ConfigError(f"model.attention_resolution: model {cfg.model.name!r} has no self-attention (only biggan); set it to 0")
    if cfg.data.image_size:
        check_model_size(cfg.model.name, cfg.data.image_size, cfg.model.attention_resolution)


def check_model_size(name: str, image_size: int, attention_resolution: int = 0, source: str = "data.image_size") -> None:
    """Refuse, with a ``ConfigError`` naming ``source`` (exit 2), an image size the model cannot
    make, or an attention resolution that is no stage side at that size. Pure arithmetic."""
    if name in _ANY_SIZE:
        return
    check_image_size(name, image_size, source)
    check_attention_resolution(name, image_size, attention_resolution)


def build_models(name: str, spec: ModelSpec) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(G, D) for ``spec``. G(z, y) -> images in [-1, 1], B x C x H x W; D(x, y) -> logits, B."""
    if name not in _REGISTRY:
        raise ValueError(f"model.name: unknown model {name!r}; allowed values: {', '.join(available_models())}")
    return importlib.import_module(_REGISTRY[name]).build(spec)


def build_generator(name: str, spec: ModelSpec) -> torch.nn.Module:
    return build_models(name, spec)[0]
