"""The Python API for notebooks: ``from gandist import load_generator``.

    g = load_generator("runs/digits")            # a run directory, a checkpoint or an export
    images = g.sample(16, labels=3, seed=0)      # uint8, 16 x C x H x W
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from gandist.grid import to_uint8


class Generator(nn.Module):
    """A trained gandist generator (the EMA weights). ``forward(z, labels)`` is the network itself
    (images in [-1, 1]); ``sample`` draws noise and returns uint8 images. ``info``: model_name,
    spec (image_size, channels, num_classes, z_dim, ...), class_names, step."""

    def __init__(self, net: nn.Module, info: dict):
        super().__init__()
        self.net = net
        self.info = info
        self.spec = info["spec"]
        self.num_classes = self.spec.num_classes
        self.z_dim = self.spec.z_dim
        self.class_names = list(info.get("class_names") or [])

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z, labels)

    @torch.no_grad()
    def sample(self, n: int, labels: int | Sequence[int] | torch.Tensor | None = None, truncation: float | None = None,
               seed: int | None = None) -> torch.Tensor:
        """``n`` images as uint8 n x C x H x W (``.permute(0, 2, 3, 1).numpy()`` for PIL).

        labels: None (conditional: the classes in turn, ``n // num_classes`` of each in blocks),
        one class index for all, or one per image. truncation: resample noise entries with
        |z| > truncation (more typical, less diverse images; None: off). seed: the noise's seed
        (None: torch's global generator).
        """
        if n < 1:
            raise ValueError(f"n: must be >= 1 (got {n})")
        device = next(self.net.parameters()).device
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.z_dim, generator=gen)
        if truncation is not None:
            if truncation <= 0:
                raise ValueError(f"truncation: must be > 0 or None (got {truncation})")
            while (outside := z.abs() > truncation).any():  # truncation trick (Brock et al., 2019)
                z[outside] = torch.randn(int(outside.sum()), generator=gen)
        y = self._labels(n, labels)
        was_training = self.net.training
        self.net.eval()
        try:
            images = self.net(z.to(device), None if y is None else y.to(device))
        finally:
            self.net.train(was_training)
        return to_uint8(images.cpu())

    def _labels(self, n: int, labels) -> torch.Tensor | None:
        if not self.num_classes:
            if labels is not None:
                raise ValueError("labels: this generator is unconditional (trained with model.conditional=false)")
            return None
        if labels is None:
            return torch.arange(n) * self.num_classes // n
        y = torch.as_tensor(labels, dtype=torch.long)
        y = y.expand(n).clone() if y.dim() == 0 else y
        if y.shape != (n,):
            raise ValueError(f"labels: expected one class index or {n} of them, got shape {tuple(y.shape)}")
        if (y < 0).any() or (y >= self.num_classes).any():
            raise ValueError(f"labels: class indices must be in 0..{self.num_classes - 1}")
        return y


def load_generator(path: str | os.PathLike, *, ema: bool = True, device: str | torch.device = "cpu") -> Generator:
    """A run directory (its newest good checkpoint), one ``ckpt/step_*`` folder, an export folder
    (``gandist export``) or an older ``.safetensors`` export -> ``Generator`` in eval mode."""
    from gandist.generators import load_generator as load

    net, info = load(path, ema=ema, log=lambda message: None)
    return Generator(net, info).to(device).eval()
