"""A modern minimalist GAN backbone in the style of R3GAN (Huang, Gokaslan, Kuleshov & Tompkin,
"The GAN is dead; long live the GAN! A Modern GAN Baseline", NeurIPS 2024; reference code:
github.com/brownvc/R3GAN). Meant to be trained with the relativistic pairing loss plus R1 and
R2 (``loss.name=rpgan``, ``reg.r1_gamma``, ``reg.r2_gamma``), as the paper does.

What makes it R3GAN-like:
- ConvNeXt-style residual blocks: 1x1 conv expanding the channels, grouped 3x3 conv,
  1x1 conv back (an inverted bottleneck), leaky ReLUs with learned biases between them;
- no normalization layers anywhere;
- fix-up style initialisation: He init scaled by ``L ** -1/4`` for the L residual blocks of a
  network, and the last conv of every block zero-initialised, so each block starts as the
  identity and the network's output variance does not grow with depth;
- resampling by fixed low-pass filters (bilinear up, [1,3,3,1] blur + stride-2 down), never by
  strided or transposed learned convs; channel changes by separate 1x1 convs;
- a learned base x base "basis" modulated by the latent as the first stage of G, and its mirror
  in D (a depthwise base x base conv to a vector); class conditioning by an embedding joined
  to z in G and by projection in D.
Unlike the reference, G ends in tanh (gandist's generators output [-1, 1]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gandist.models.blocks import add_spectral_norm, lrelu_gain, stage_widths
from gandist.models.layers import MinibatchStd
from gandist.models.sizes import check_image_size

NAME = "r3"
SPECTRAL_NORM_D = False  # R3GAN needs none: R1 + R2 keep D smooth (see docs/models.md)
BLOCKS_PER_STAGE = 2     # as in every R3GAN preset
EXPANSION = 2            # inverted-bottleneck expansion factor of the presets
GROUP_CHANNELS = 16      # channels per group of the grouped 3x3 conv (CIFAR preset: 1536 / 96)


def he_init_(weight: torch.Tensor, gain: float = 1.0) -> None:
    """N(0, gain^2 / fan_in) (He et al.), fan_in counting the input channels of one group."""
    fan_in = weight.shape[1] * weight[0, 0].numel() if weight.dim() > 2 else weight.shape[1]
    nn.init.normal_(weight, 0.0, gain / math.sqrt(fan_in))


class BiasedLeakyReLU(nn.Module):
    """Leaky ReLU (slope 0.2) after a learned per-channel bias: the only biases of the network."""

    def __init__(self, ch: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(ch))

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x_bchw + self.bias.to(x_bchw.dtype).view(1, -1, 1, 1), 0.2)


class ResidualBlock(nn.Module):
    """x + conv1x1(act(grouped conv3x3(act(conv1x1(x))))), no normalization."""

    def __init__(self, ch: int, num_blocks_total: int):
        super().__init__()
        expanded = ch * EXPANSION
        groups = max(1, expanded // GROUP_CHANNELS)
        # Fix-up scaling: with 3 linear layers per block, L ** (-1 / (2*3 - 2)) keeps the sum of
        # L residual branches at unit variance (R3GAN's VarianceScalingParameter).
        gain = lrelu_gain() * num_blocks_total ** (-1 / 4)
        self.expand = nn.Conv2d(ch, expanded, 1, bias=False)
        self.mix = nn.Conv2d(expanded, expanded, 3, padding=1, groups=groups, bias=False)
        self.project = nn.Conv2d(expanded, ch, 1, bias=False)
        he_init_(self.expand.weight, gain)
        he_init_(self.mix.weight, gain)
        nn.init.zeros_(self.project.weight)  # the block starts as the identity
        self.act1, self.act2 = BiasedLeakyReLU(expanded), BiasedLeakyReLU(expanded)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return x_bchw + self.project(self.act2(self.mix(self.act1(self.expand(x_bchw)))))


def _lowpass_kernel() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])  # [1, 2, 1] convolved with [1, 1]: R3GAN's filter
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


class Upsample(nn.Module):
    """1x1 conv when the channels change, then 2x interpolation by the fixed [1,3,3,1] filter
    (bilinear interpolation): odd sides work (7 -> 14)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.linear = nn.Conv2d(in_ch, out_ch, 1, bias=False) if in_ch != out_ch else None
        if self.linear is not None:
            he_init_(self.linear.weight)
        self.register_buffer("kernel", _lowpass_kernel() * 4, persistent=False)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        if self.linear is not None:
            x_bchw = self.linear(x_bchw)
        c = x_bchw.shape[1]
        k = self.kernel.to(x_bchw.dtype).expand(c, 1, 4, 4)
        return F.conv_transpose2d(x_bchw, k, stride=2, padding=1, groups=c)   # B x C x 2H x 2W


class Downsample(nn.Module):
    """[1,3,3,1] blur with stride 2, then a 1x1 conv when the channels change."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.linear = nn.Conv2d(in_ch, out_ch, 1, bias=False) if in_ch != out_ch else None
        if self.linear is not None:
            he_init_(self.linear.weight)
        self.register_buffer("kernel", _lowpass_kernel(), persistent=False)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        c = x_bchw.shape[1]
        k = self.kernel.to(x_bchw.dtype).expand(c, 1, 4, 4)
        x_bchw = F.conv2d(x_bchw, k, stride=2, padding=1, groups=c)           # B x C x H/2 x W/2
        return self.linear(x_bchw) if self.linear is not None else x_bchw


class Generator(nn.Module):
    def __init__(self, image_size: int, channels: int, z_dim: int, width: int, num_classes: int = 0):
        super().__init__()
        self.base, num_doublings = check_image_size(NAME, image_size)
        self.z_dim, self.num_classes = z_dim, num_classes
        widths = stage_widths(width, num_doublings)
        num_blocks = BLOCKS_PER_STAGE * len(widths)
        # Class embedding of z's length joined to z (the CIFAR preset's ConditionEmbeddingDimension).
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 1.0 / math.sqrt(num_classes))  # He init of a one-hot linear
        in_dim = z_dim * (2 if num_classes else 1)
        # First stage: a learned base x base basis, one map per channel, scaled per sample.
        self.basis = nn.Parameter(torch.randn(widths[0], self.base, self.base))
        self.to_scale = nn.Linear(in_dim, widths[0], bias=False)
        he_init_(self.to_scale.weight)
        stages = []
        for j, ch in enumerate(widths):
            layers = [] if j == 0 else [Upsample(widths[j - 1], ch)]
            layers += [ResidualBlock(ch, num_blocks) for _ in range(BLOCKS_PER_STAGE)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.Conv2d(widths[-1], channels, 1, bias=False)
        he_init_(self.to_image.weight)

    def forward(self, z_bz: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if y_b is None:
                raise ValueError("conditional generator needs class labels y")
            z_bz = torch.cat([z_bz, self.embed(y_b)], dim=1)
        h = self.basis[None] * self.to_scale(z_bz)[:, :, None, None]    # B x C0 x base x base
        return torch.tanh(self.to_image(self.stages(h)))


class Discriminator(nn.Module):
    def __init__(self, image_size: int, channels: int, width: int, num_classes: int = 0, *,
                 minibatch_std: bool = False, sn: bool = SPECTRAL_NORM_D):
        super().__init__()
        self.base, num_doublings = check_image_size(NAME, image_size)
        widths = stage_widths(width, num_doublings)      # widths[j]: channels at side base * 2**j
        num_blocks = BLOCKS_PER_STAGE * len(widths)
        self.from_image = nn.Conv2d(channels, widths[-1], 1, bias=False)
        he_init_(self.from_image.weight)
        stages = []
        for j in range(num_doublings, 0, -1):
            stages.append(nn.Sequential(*[ResidualBlock(widths[j], num_blocks) for _ in range(BLOCKS_PER_STAGE)],
                                        Downsample(widths[j], widths[j - 1])))
        stages.append(nn.Sequential(*[ResidualBlock(widths[0], num_blocks) for _ in range(BLOCKS_PER_STAGE)]))
        self.stages = nn.Sequential(*stages)
        self.mbstd = MinibatchStd() if minibatch_std else nn.Identity()
        ch = widths[0] + int(minibatch_std)
        # Last stage: a depthwise base x base conv reads each channel's map into one number.
        self.basis = nn.Conv2d(ch, ch, self.base, groups=ch, bias=False)
        he_init_(self.basis.weight)
        out_dim = widths[0] if num_classes else 1
        self.to_out = nn.Linear(ch, out_dim, bias=False)
        he_init_(self.to_out.weight)
        # Projection: logit = <embed(y), features>; embedding scaled so the logit starts O(1).
        self.embed = nn.Embedding(num_classes, out_dim) if num_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 1.0 / math.sqrt(out_dim))
        if sn:
            # Spectral norm cannot normalise a zero matrix (its largest singular value is 0):
            # the last conv of each block starts small instead, so blocks start near, not at,
            # the identity. Applied after the init: see add_spectral_norm.
            for block in self.modules():
                if isinstance(block, ResidualBlock):
                    he_init_(block.project.weight, 1e-2)
            add_spectral_norm(self)

    def forward(self, x_bchw: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        h = self.mbstd(self.stages(self.from_image(x_bchw)))          # B x C0 x base x base
        h_bf = self.to_out(self.basis(h).flatten(1))                   # B x F (F = 1 unconditional)
        if self.embed is None:
            return h_bf.squeeze(1)
        if y_b is None:
            raise ValueError("conditional discriminator needs class labels y")
        return (h_bf * self.embed(y_b)).sum(dim=1)


def build(spec) -> tuple[nn.Module, nn.Module]:
    sn = SPECTRAL_NORM_D if spec.d_spectral_norm is None else spec.d_spectral_norm
    g = Generator(spec.image_size, spec.channels, spec.z_dim, spec.g_width, spec.num_classes)
    d = Discriminator(spec.image_size, spec.channels, spec.d_width, spec.num_classes,
                      minibatch_std=spec.d_minibatch_std, sn=sn)
    return g, d
