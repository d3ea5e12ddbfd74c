"""The textbook beginner pair: a fully connected generator and a small conv discriminator."""

from __future__ import annotations

import torch
from torch import nn

from gandist.models import dcgan
from gandist.models.layers import LabelConcat, dcgan_init


class Generator(nn.Module):
    """Linear -> BatchNorm -> ReLU blocks, then a tanh image (Goodfellow et al., 2014 style)."""

    def __init__(self, image_size: int, channels: int, z_dim: int, width: int, num_classes: int = 0):
        super().__init__()
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.image_shape = (channels, image_size, image_size)
        self.cond = LabelConcat(num_classes, z_dim)
        hidden = [width * 4, width * 8, width * 16]
        layers: list[nn.Module] = []
        fan_in = z_dim + self.cond.extra_dim
        for units in hidden:
            layers += [nn.Linear(fan_in, units), nn.BatchNorm1d(units), nn.ReLU(True)]
            fan_in = units
        layers += [nn.Linear(fan_in, channels * image_size * image_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z_bz: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.cond(z_bz, y_b)).view(-1, *self.image_shape)


def build(spec) -> tuple[nn.Module, nn.Module]:
    g = Generator(spec.image_size, spec.channels, spec.z_dim, spec.g_width, spec.num_classes)
    # The small conv discriminator (conv -> BatchNorm -> LeakyReLU, one logit) is DCGAN's, with
    # its spectral-norm variant.
    sn = dcgan.SPECTRAL_NORM_D if spec.d_spectral_norm is None else spec.d_spectral_norm
    d = dcgan.Discriminator(spec.image_size, spec.channels, spec.d_width, spec.num_classes, spec.d_minibatch_std, sn)
    return g, d
