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

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# Name -> module with ``build(spec) -> (G, D)``; imported on use, so that validating a config
# (and ``gandist --help``) does not import torch.
_REGISTRY: dict[str, str] = {
    "dcgan": "gandist.models.dcgan",
    "mlp": "gandist.models.mlp",
}


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build_models(name: str, spec: ModelSpec) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(G, D) for ``spec``. G(z, y) -> images in [-1, 1], B x C x H x W; D(x, y) -> logits, B."""
    if name not in _REGISTRY:
        raise ValueError(f"model.name: unknown model {name!r}; allowed values: {', '.join(available_models())}")
    return importlib.import_module(_REGISTRY[name]).build(spec)


def build_generator(name: str, spec: ModelSpec) -> torch.nn.Module:
    return build_models(name, spec)[0]
