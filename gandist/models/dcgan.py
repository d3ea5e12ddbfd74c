"""DCGAN (Radford et al., 2015) for square images whose side is a power of two >= 8."""

from __future__ import annotations

import math

import torch
from torch import nn

from gandist.models.layers import LabelConcat, MinibatchStd, ProjectionHead, dcgan_init


def _num_blocks(image_size: int) -> int:
    blocks = int(math.log2(image_size)) - 2
    if image_size < 8 or 2 ** (blocks + 2) != image_size:
        raise ValueError(f"dcgan: image size must be a power of two >= 8, got {image_size} (set data.image_size)")
    return blocks


class Generator(nn.Module):
    def __init__(self, image_size: int, channels: int, z_dim: int, width: int, num_classes: int = 0):
        super().__init__()
        blocks = _num_blocks(image_size)
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.cond = LabelConcat(num_classes, z_dim)
        ch = width * 2 ** (blocks - 1)
        layers: list[nn.Module] = [
            # B x (z + emb) x 1 x 1 -> B x ch x 4 x 4
            nn.ConvTranspose2d(z_dim + self.cond.extra_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(blocks - 1):  # each doubles the side, halves the channels
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z_bz: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        h = self.cond(z_bz, y_b)
        return self.net(h[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(self, image_size: int, channels: int, width: int, num_classes: int = 0, minibatch_std: bool = True):
        super().__init__()
        blocks = _num_blocks(image_size)
        ch = width
        # No norm on the first layer (DCGAN): it would erase the input's own statistics.
        layers: list[nn.Module] = [nn.Conv2d(channels, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for _ in range(blocks - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        self.features = nn.Sequential(*layers)  # B x ch x 4 x 4
        self.mbstd = MinibatchStd() if minibatch_std else nn.Identity()
        self.head = ProjectionHead((ch + int(minibatch_std)) * 16, num_classes)
        self.apply(dcgan_init)

    def forward(self, x_bchw: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        h_bf = self.mbstd(self.features(x_bchw)).flatten(1)
        return self.head(h_bf, y_b)


def build(spec) -> tuple[nn.Module, nn.Module]:
    g = Generator(spec.image_size, spec.channels, spec.z_dim, spec.g_width, spec.num_classes)
    d = Discriminator(spec.image_size, spec.channels, spec.d_width, spec.num_classes, spec.d_minibatch_std)
    return g, d
