"""Building blocks of the residual model families (``resnet``, ``biggan``, ``r3``).

Shapes are written as suffixes (``x_bchw``). Every block works at any side, odd ones included
(7 -> 14 -> 28), because the models follow the stage rule of ``gandist.models.sizes``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm



def stage_widths(width: int, num_doublings: int, floor: int = 8) -> list[int]:
    """Channels of each stage, from the first (base x base) to the last (full size).

    Up to 32x32 every stage has ``width`` channels (SNGAN's and BigGAN's CIFAR networks are
    constant-width); each stage beyond the third doubling halves them, as BigGAN's 64/128 px
    networks do, so the large-resolution convolutions stay affordable.
    """
    return [max(floor, width >> max(0, j - 3)) for j in range(num_doublings + 1)]


def add_spectral_norm(net: nn.Module, skip: tuple[nn.Module, ...] = ()) -> nn.Module:
    """Spectral normalisation (Miyato et al., 2018) of every conv, linear and embedding weight
    in ``net`` except the modules in ``skip``; returns ``net``.

    Call it after the weights are initialised: torch's parametrization runs its power iterations
    on the weight it sees at registration, and re-initialising afterwards leaves the estimate
    (``_u``, ``_v``) belonging to another matrix, so the first steps would run with weights
    whose largest singular value is far above 1. The estimate then advances one power
    iteration per training forward; it lives in buffers, so checkpoints keep it and DDP
    broadcasts it.
    """
    targets = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))
               and not any(m is s for s in skip)]
    for m in targets:
        spectral_norm(m)
    return net


def orthogonal_init(module: nn.Module) -> None:
    """BigGAN's initialisation: orthogonal weights, zero biases (``--G_init ortho``)."""
    if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
        nn.init.orthogonal_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def xavier_init(module: nn.Module) -> None:
    """SNGAN's initialisation: Xavier-uniform weights, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
        nn.init.xavier_uniform_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


class ClassConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (de Vries et al., 2017; used by
    SNGAN's conditional generator, Miyato & Koyama, 2018). Unconditional: plain affine BN."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, affine=not num_classes)
        if num_classes:
            self.gain = nn.Embedding(num_classes, num_features)
            self.bias = nn.Embedding(num_classes, num_features)
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gains N(1, 0.02), biases 0: near the identity, yet each class distinct from step 0
        (a whole-model init such as ``xavier_init`` must be followed by this call)."""
        if self.num_classes:
            nn.init.normal_(self.gain.weight, 1.0, 0.02)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x_bchw: torch.Tensor, y_b: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(x_bchw)
        if not self.num_classes:
            return h
        if y_b is None:
            raise ValueError("conditional generator needs class labels y")
        return h * self.gain(y_b)[:, :, None, None] + self.bias(y_b)[:, :, None, None]


class VectorConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain ``1 + W_g c`` and bias ``W_b c`` are linear in a conditioning
    vector ``c`` (BigGAN: ``c`` = the block's latent chunk joined to the shared class embedding)."""

    def __init__(self, num_features: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x_bchw: torch.Tensor, c_bk: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(c_bk)[:, :, None, None]
        return self.bn(x_bchw) * gain + self.bias(c_bk)[:, :, None, None]


class GBlock(nn.Module):
    """Residual up-block of SNGAN/BigGAN generators:
    norm -> ReLU -> 2x nearest up -> conv3 -> norm -> ReLU -> conv3, plus up -> conv1 shortcut.

    ``norm1``/``norm2`` take ``(x, cond)``, where cond is the class label (resnet) or the
    conditioning vector (biggan).
    """

    def __init__(self, in_ch: int, out_ch: int, norm1: nn.Module, norm2: nn.Module):
        super().__init__()
        self.norm1, self.norm2 = norm1, norm2
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x_bchw: torch.Tensor, cond) -> torch.Tensor:
        h = F.relu(self.norm1(x_bchw, cond))
        h = F.interpolate(h, scale_factor=2, mode="nearest")             # B x C x 2H x 2W
        h = self.conv2(F.relu(self.norm2(self.conv1(h), cond)))
        return h + self.shortcut(F.interpolate(x_bchw, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Residual down-block of SNGAN/BigGAN discriminators.

    Pre-activation (ReLU -> conv3 -> ReLU -> conv3 -> avg-pool) except for the first block,
    which sees raw pixels and so starts with a conv ("optimized block" of SNGAN). The shortcut
    is a 1x1 conv when the channels change or the block downsamples.
    """

    def __init__(self, in_ch: int, out_ch: int, *, down: bool, first: bool):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if (in_ch != out_ch or down) else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        # floor(H / 2): an odd side (7 -> 3) only happens below the stage plan's base, never here.
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        h = x_bchw if self.first else F.relu(x_bchw)
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if self.shortcut is None:
            return h + x_bchw
        if self.first:  # pool first: the 1x1 conv then runs on a quarter of the pixels
            return h + self.shortcut(self._pool(x_bchw))
        return h + self._pool(self.shortcut(x_bchw))


class SelfAttention(nn.Module):
    """Non-local self-attention of SAGAN/BigGAN (Zhang et al., 2019): queries at every pixel,
    keys and values max-pooled 2x, output scaled by a learned gamma that starts at 0 so the
    block is the identity at initialisation."""

    def __init__(self, ch: int):
        super().__init__()
        self.theta = nn.Conv2d(ch, max(1, ch // 8), 1, bias=False)
        self.phi = nn.Conv2d(ch, max(1, ch // 8), 1, bias=False)
        self.g = nn.Conv2d(ch, max(1, ch // 2), 1, bias=False)
        self.o = nn.Conv2d(max(1, ch // 2), ch, 1, bias=False)
        # Shape (1,), not a 0-dim scalar: DeepSpeed broadcasts parameters as byte views, which
        # torch refuses for 0-dim tensors ("self.dim() cannot be 0 to view Float as Byte").
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x_bchw.shape
        pool = (lambda t: F.max_pool2d(t, 2)) if min(h, w) >= 2 else (lambda t: t)
        q = self.theta(x_bchw).flatten(2)                       # B x C/8 x HW
        k = pool(self.phi(x_bchw)).flatten(2)                   # B x C/8 x HW/4
        v = pool(self.g(x_bchw)).flatten(2)                     # B x C/2 x HW/4
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)     # B x HW x HW/4
        out = (v @ attn.transpose(1, 2)).view(b, -1, h, w)      # B x C/2 x H x W
        return x_bchw + self.gamma * self.o(out)


def lrelu_gain() -> float:
    """Gain that keeps the activations' second moment through a leaky ReLU with slope 0.2."""
    return math.sqrt(2 / (1 + 0.2**2))
