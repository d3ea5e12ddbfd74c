"""SNGAN-style residual generator and discriminator (Miyato et al., 2018; conditional form:
Miyato & Koyama, 2018, "cGANs with Projection Discriminator").

G: z -> linear -> base x base, then one residual up-block per doubling (BatchNorm, or
class-conditional BatchNorm when conditional), then BN -> ReLU -> conv3 -> tanh.
D: the mirror image: one residual down-block per halving to base x base, one more block at
base x base, ReLU, global sum pooling and a projection head; spectral norm on every layer by
default (``model.spectral_norm_d``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gandist.models.blocks import ClassConditionalBatchNorm2d, DBlock, GBlock, SelfAttention, add_spectral_norm, stage_widths, xavier_init
from gandist.models.layers import MinibatchStd, ProjectionHead
from gandist.models.sizes import check_attention_resolution, check_image_size

NAME = "resnet"
SPECTRAL_NORM_D = True


class Generator(nn.Module):
    def __init__(self, image_size: int, channels: int, z_dim: int, width: int, num_classes: int = 0):
        super().__init__()
        self.base, num_doublings = check_image_size(NAME, image_size)
        self.z_dim, self.num_classes = z_dim, num_classes
        widths = stage_widths(width, num_doublings)
        self.widths = widths
        self.linear = nn.Linear(z_dim, widths[0] * self.base * self.base)
        self.blocks = nn.ModuleList(
            GBlock(widths[j], widths[j + 1], ClassConditionalBatchNorm2d(widths[j], num_classes),
                   ClassConditionalBatchNorm2d(widths[j + 1], num_classes))
            for j in range(num_doublings)
        )
        self.out_bn = nn.BatchNorm2d(widths[-1])
        self.out_conv = nn.Conv2d(widths[-1], channels, 3, padding=1)
        self.apply(xavier_init)
        for m in self.modules():
            if isinstance(m, ClassConditionalBatchNorm2d):
                m.reset_parameters()

    def forward(self, z_bz: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and y_b is None:
            raise ValueError("conditional generator needs class labels y")
        h = self.linear(z_bz).view(z_bz.shape[0], self.widths[0], self.base, self.base)
        for block in self.blocks:
            h = block(h, y_b)                                   # B x C_j x side_j x side_j
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class Discriminator(nn.Module):
    """Residual down-blocks to base x base, one more block, global sum pooling, projection head.
    ``biggan``'s D is this one with self-attention at ``attention_resolution`` and orthogonal
    initial weights."""

    def __init__(self, image_size: int, channels: int, width: int, num_classes: int = 0, *,
                 minibatch_std: bool = True, sn: bool = SPECTRAL_NORM_D, attention_resolution: int = 0,
                 init=xavier_init, model_name: str = NAME):
        super().__init__()
        _, num_doublings = check_image_size(model_name, image_size)
        check_attention_resolution(model_name, image_size, attention_resolution)
        widths = stage_widths(width, num_doublings)             # widths[j]: channels at side base * 2**j
        blocks: list[nn.Module] = []
        in_ch, side, attended = channels, image_size, False
        for j in range(num_doublings, 0, -1):                   # side base*2**j -> base*2**(j-1)
            blocks.append(DBlock(in_ch, widths[j - 1], down=True, first=not blocks))
            in_ch, side = widths[j - 1], side // 2
            if attention_resolution and not attended and side <= attention_resolution:
                blocks.append(SelfAttention(in_ch))  # at the first feature map at most that side
                attended = True
        blocks.append(DBlock(in_ch, widths[0], down=False, first=False))
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStd() if minibatch_std else nn.Identity()
        self.head = ProjectionHead(widths[0] + int(minibatch_std), num_classes)
        self.apply(init)
        if sn:  # after the init: see add_spectral_norm
            add_spectral_norm(self)

    def forward(self, x_bchw: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        h = self.mbstd(F.relu(self.blocks(x_bchw)))             # B x C x base x base
        return self.head(h.sum(dim=(2, 3)), y_b)                # global sum pooling, as in SNGAN


def build(spec) -> tuple[nn.Module, nn.Module]:
    sn = SPECTRAL_NORM_D if spec.d_spectral_norm is None else spec.d_spectral_norm
    g = Generator(spec.image_size, spec.channels, spec.z_dim, spec.g_width, spec.num_classes)
    d = Discriminator(spec.image_size, spec.channels, spec.d_width, spec.num_classes,
                      minibatch_std=spec.d_minibatch_std, sn=sn)
    return g, d
