"""DCGAN (Radford et al., 2015) for square images of any side ``base * 2**k`` (see ``sizes``).

G: ``z * embed(y)`` -> linear -> ``base x base`` feature map -> k doubling stages (transposed
conv 4x4, stride 2), the last one to the image. D mirrors it: k halving stages (conv 4x4,
stride 2) down to ``base x base``, minibatch standard deviation, a projection head. With
``model.spectral_norm_d=on`` D is the "standard CNN" of SNGAN (Miyato et al., 2018): every conv,
linear and embedding weight spectrally normalised and no BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from gandist.models.blocks import add_spectral_norm
from gandist.models.layers import LabelScale, MinibatchStd, ProjectionHead, dcgan_init
from gandist.models.sizes import stage_plan

SPECTRAL_NORM_D = False  # DCGAN's own D uses BatchNorm; spectral norm is the SNGAN variant


def _plan(image_size: int) -> tuple[int, int]:
    plan = stage_plan(image_size)
    if plan is None:
        from gandist.models.sizes import supported_sizes

        raise ValueError(f"dcgan: cannot make {image_size}x{image_size} images (set data.image_size to one of "
                         f"{', '.join(map(str, supported_sizes()))})")
    return plan


class Generator(nn.Module):
    def __init__(self, image_size: int, channels: int, z_dim: int, width: int, num_classes: int = 0):
        super().__init__()
        base, doublings = _plan(image_size)
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.base = base
        self.cond = LabelScale(num_classes, z_dim)
        ch = width * 2 ** (doublings - 1)  # channels halve at each doubling; the last stage makes the image
        self.first_channels = ch
        # B x z -> B x (ch * base * base): a linear layer reaches any base, a 4x4 transposed conv only 4.
        self.first = nn.Sequential(nn.Linear(z_dim, ch * base * base, bias=False), nn.BatchNorm1d(ch * base * base), nn.ReLU(True))
        layers: list[nn.Module] = []
        for _ in range(doublings - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z_bz: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        h = self.first(self.cond(z_bz, y_b))
        return self.net(h.view(-1, self.first_channels, self.base, self.base))


class Discriminator(nn.Module):
    def __init__(self, image_size: int, channels: int, width: int, num_classes: int = 0, minibatch_std: bool = True,
                 sn: bool = SPECTRAL_NORM_D):
        super().__init__()
        base, halvings = _plan(image_size)
        ch = width
        # No norm on the first layer (DCGAN): it would erase the input's own statistics.
        layers: list[nn.Module] = [nn.Conv2d(channels, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for _ in range(halvings - 1):
            if sn:  # BatchNorm would rescale each layer's output again and undo its Lipschitz bound
                layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            else:
                layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        self.features = nn.Sequential(*layers)  # B x ch x base x base
        self.mbstd = MinibatchStd() if minibatch_std else nn.Identity()
        self.head = ProjectionHead((ch + int(minibatch_std)) * base * base, num_classes)
        self.apply(dcgan_init)
        if sn:  # after the init: see add_spectral_norm
            add_spectral_norm(self)

    def forward(self, x_bchw: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        h_bf = self.mbstd(self.features(x_bchw)).flatten(1)
        return self.head(h_bf, y_b)


def build(spec) -> tuple[nn.Module, nn.Module]:
    g = Generator(spec.image_size, spec.channels, spec.z_dim, spec.g_width, spec.num_classes)
    sn = SPECTRAL_NORM_D if spec.d_spectral_norm is None else spec.d_spectral_norm
    d = Discriminator(spec.image_size, spec.channels, spec.d_width, spec.num_classes, spec.d_minibatch_std, sn)
    return g, d
