"""BigGAN-style generator and discriminator (Brock et al., 2019; reference code:
github.com/ajbrock/BigGAN-PyTorch).

G: the latent z is split into one chunk per stage ("hierarchical latent"). The first chunk
feeds the linear layer that makes the base x base map; every residual up-block gets its own
chunk, joined to a class embedding shared by all blocks, and turns it into the gains and
biases of its conditional BatchNorms. Spectral norm on every G layer, as in BigGAN.
Self-attention (SAGAN) after the stage whose side is ``model.attention_resolution`` (0: none).
D: residual down-blocks with spectral norm (``model.spectral_norm_d``), attention at the first
feature map whose side is at most ``attention_resolution``, global sum pooling and a
projection head. Weights start orthogonal (BigGAN's ``ortho`` init), which suits the
orthogonal regularization of G (``reg.ortho_weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gandist.errors import ConfigError
from gandist.models import resnet
from gandist.models.blocks import GBlock, SelfAttention, VectorConditionalBatchNorm2d, add_spectral_norm, orthogonal_init, stage_widths
from gandist.models.sizes import check_attention_resolution, check_image_size

NAME = "biggan"
SPECTRAL_NORM_D = True
EMBED_DIM = 128  # BigGAN's shared_dim


class Generator(nn.Module):
    def __init__(self, image_size: int, channels: int, z_dim: int, width: int, num_classes: int = 0, *,
                 attention_resolution: int = 0, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.base, num_doublings = check_image_size(NAME, image_size)
        check_attention_resolution(NAME, image_size, attention_resolution)
        num_chunks = num_doublings + 1
        if z_dim < num_chunks:
            raise ConfigError(
                f"model.z_dim: biggan splits z into {num_chunks} chunks at {image_size}x{image_size} "
                f"(one per stage); use model.z_dim >= {num_chunks} (got {z_dim})"
            )
        self.z_dim, self.num_classes, self.num_chunks = z_dim, num_classes, num_chunks
        # torch.tensor_split's sizes: the first z_dim % num_chunks chunks get one extra element.
        q, r = divmod(z_dim, num_chunks)
        chunk_dims = [q + 1] * r + [q] * (num_chunks - r)
        self.shared = nn.Embedding(num_classes, embed_dim) if num_classes else None
        shared_dim = embed_dim if num_classes else 0
        widths = stage_widths(width, num_doublings)
        self.widths = widths
        self.linear = nn.Linear(chunk_dims[0], widths[0] * self.base * self.base)
        self.blocks = nn.ModuleList()
        self.attention = nn.ModuleDict()
        side = self.base
        if attention_resolution == side:
            self.attention[str(side)] = SelfAttention(widths[0])
        for j in range(num_doublings):
            cond_dim = chunk_dims[j + 1] + shared_dim
            self.blocks.append(GBlock(widths[j], widths[j + 1], VectorConditionalBatchNorm2d(widths[j], cond_dim),
                                      VectorConditionalBatchNorm2d(widths[j + 1], cond_dim)))
            side *= 2
            if attention_resolution == side:
                self.attention[str(side)] = SelfAttention(widths[j + 1])
        self.out_bn = nn.BatchNorm2d(widths[-1])
        self.out_conv = nn.Conv2d(widths[-1], channels, 3, padding=1)
        self.apply(orthogonal_init)
        # Spectral norm on every G layer, as in BigGAN, except the shared class embedding.
        add_spectral_norm(self, skip=(self.shared,) if self.shared is not None else ())

    def forward(self, z_bz: torch.Tensor, y_b: torch.Tensor | None = None) -> torch.Tensor:
        chunks = torch.tensor_split(z_bz, self.num_chunks, dim=1)       # one latent chunk per stage
        if self.shared is not None:
            if y_b is None:
                raise ValueError("conditional generator needs class labels y")
            shared_be = self.shared(y_b)
            conds = [torch.cat([c, shared_be], dim=1) for c in chunks[1:]]
        else:
            conds = list(chunks[1:])
        h = self.linear(chunks[0]).view(z_bz.shape[0], self.widths[0], self.base, self.base)
        h = self._attend(h)
        for block, cond in zip(self.blocks, conds):
            h = self._attend(block(h, cond))                          # B x C_j x side_j x side_j
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))

    def _attend(self, h: torch.Tensor) -> torch.Tensor:
        layer = self.attention[str(h.shape[-1])] if str(h.shape[-1]) in self.attention else None
        return layer(h) if layer is not None else h


def Discriminator(image_size: int, channels: int, width: int, num_classes: int = 0, *,
                  attention_resolution: int = 0, minibatch_std: bool = True, sn: bool = SPECTRAL_NORM_D) -> nn.Module:
    """BigGAN's D: the residual D of ``resnet`` with self-attention and orthogonal initial weights."""
    return resnet.Discriminator(image_size, channels, width, num_classes, minibatch_std=minibatch_std, sn=sn,
                                attention_resolution=attention_resolution, init=orthogonal_init, model_name=NAME)


def build(spec) -> tuple[nn.Module, nn.Module]:
    sn = SPECTRAL_NORM_D if spec.d_spectral_norm is None else spec.d_spectral_norm
    g = Generator(spec.image_size, spec.channels, spec.z_dim, spec.g_width, spec.num_classes,
                  attention_resolution=spec.attention_resolution)
    d = Discriminator(spec.image_size, spec.channels, spec.d_width, spec.num_classes,
                      attention_resolution=spec.attention_resolution, minibatch_std=spec.d_minibatch_std, sn=sn)
    return g, d
