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


class LabelScale(nn.Module):
    """Multiplies the latent vector by a learned class embedding: ``z * embed(y)``.

    Concatenating the label to a small z let a conditional DCGAN map each class to one
    prototype and ignore z (measured on the digits: recall 0.00). With the product, every
    unit of the first layer's input carries both the class and the noise, so G cannot drop z
    without dropping the class too. The embedding starts at N(0, 1), so at init the product has
    the scale of z itself.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim) if num_classes else None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return z
        if y is None:
            raise ValueError("conditional generator needs class labels y")
        return z * self.embed(y)


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


class MinibatchStd(nn.Module):
    """Appends the batch's mean standard deviation as one feature map (Karras et al., 2018).

    A generator that ignores its noise makes batches with almost no variance; this feature
    lets D see that, so mode collapse is penalised instead of rewarded.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x_bchw.shape
        group = next(g for g in range(min(self.group_size, b), 0, -1) if b % g == 0)
        y = x_bchw.float().view(group, -1, c, h, w)          # G x M x C x H x W, M = b / group
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()     # M x C x H x W
        y = y.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)          # M x 1 x 1 x 1
        y = y.repeat(group, 1, h, w).to(x_bchw.dtype)        # B x 1 x H x W
        return torch.cat([x_bchw, y], dim=1)
