"""Generator/discriminator pairs, looked up by name (``model.name``)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gandist.config import Config, register_check
from gandist.errors import ConfigError, DataError

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

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def model_spec(cfg: Config, info) -> ModelSpec:
    """The spec to build for ``cfg`` on the data ``info`` describes (a ``gandist.data.DatasetInfo``)."""
    if cfg.model.conditional and not info.num_classes:
        raise DataError(
            f"model.conditional: the dataset {info.manifest_path or cfg.data.path} has no class labels; "
            "set model.conditional=false to train an unconditional GAN"
        )
    return ModelSpec(
        image_size=cfg.data.image_size or info.image_size,
        channels=cfg.data.channels or info.channels,
        num_classes=info.num_classes if cfg.model.conditional else 0,
        z_dim=cfg.model.z_dim,
        g_width=cfg.model.g_width,
        d_width=cfg.model.d_width,
        d_minibatch_std=cfg.model.d_minibatch_std,
    )


# Name -> module with ``build(spec) -> (G, D)``; imported on use, so that validating a config
# (and ``gandist --help``) does not import torch.
_REGISTRY: dict[str, str] = {
    "dcgan": "gandist.models.dcgan",
    "mlp": "gandist.models.mlp",
}


def available_models() -> list[str]:
    return sorted(_REGISTRY)


@register_check
def check_model_config(cfg: Config) -> None:
    """``model.name`` names a registered model (run by ``Config.validate``)."""
    names = available_models()
    if cfg.model.name not in names:
        raise ConfigError(f"model.name: unknown model {cfg.model.name!r}; allowed values: {', '.join(names)}")


def build_models(name: str, spec: ModelSpec) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(G, D) for ``spec``. G(z, y) -> images in [-1, 1], B x C x H x W; D(x, y) -> logits, B."""
    if name not in _REGISTRY:
        raise ValueError(f"model.name: unknown model {name!r}; allowed values: {', '.join(available_models())}")
    return importlib.import_module(_REGISTRY[name]).build(spec)


def build_generator(name: str, spec: ModelSpec) -> torch.nn.Module:
    return build_models(name, spec)[0]
