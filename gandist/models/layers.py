"""Layers shared by the model families."""

from __future__ import annotations

import torch
from torch import nn


def dcgan_init(module: nn.Module) -> None:
    """Weight init of Radford et al. (2015): conv weights N(0, 0.02), norm scales N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class LabelConcat(nn.Module):
    """Concatenates a learned class embedding to the latent vector (conditional G)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim) if num_classes else None

    @property
    def extra_dim(self) -> int:
        return self.embed.embedding_dim if self.embed is not None else 0

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return z
        if y is None:
            raise ValueError("conditional generator needs class labels y")
        return torch.cat([z, self.embed(y)], dim=1)


class ProjectionHead(nn.Module):
    """Final logit of a discriminator: linear(h) + <embed(y), h> (Miyato & Koyama, 2018)."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(num_features, 1)
        self.embed = nn.Embedding(num_classes, num_features) if num_classes else None
        if self.embed is not None:
            # N(0, 1) (the default) over thousands of features gives logits in the hundreds
            # at init: start the class term as small as DCGAN's other weights.
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, h_bf: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        logit_b = self.linear(h_bf).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("conditional discriminator needs class labels y")
            logit_b = logit_b + (self.embed(y) * h_bf).sum(dim=1)
        return logit_b
