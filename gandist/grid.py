"""Image grids and PNG files without torchvision (which does not import beside the CPU torch build)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from gandist.fileio import atomic_write_with


def to_uint8(images_bchw: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (generator output) -> uint8 [0, 255]."""
    return ((images_bchw.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range generators produce."""
    return images_uint8.float().div_(127.5).sub_(1.0)


def make_grid(images_uint8_bchw: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile B images into one H x W x C uint8 array, ``nrow`` images per row."""
    b, c, h, w = images_uint8_bchw.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(b))))
    ncol = int(math.ceil(b / nrow))
    grid = np.zeros((pad + ncol * (h + pad), pad + nrow * (w + pad), c), dtype=np.uint8)
    imgs = images_uint8_bchw.cpu().numpy().transpose(0, 2, 3, 1)
    for i in range(b):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = imgs[i]
    return grid


def save_png(array_hwc: np.ndarray, path: str | os.PathLike, upscale: int = 1) -> Path:
    """Write an H x W x C uint8 array as PNG (atomically); ``upscale`` enlarges small images for viewing."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array_hwc[:, :, 0] if array_hwc.shape[2] == 1 else array_hwc)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    atomic_write_with(path, lambda tmp: img.save(tmp, format="PNG"), fsync=False)
    return path


def view_upscale(image_side: int) -> int:
    """Nearest-neighbour enlargement that shows each image at >= 48 px (16x16 digits: 3x)."""
    return max(1, min(8, math.ceil(48 / image_side)))


def save_grid(images_bchw: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Generator output in [-1, 1] -> PNG grid, enlarged so that small images are visible."""
    grid = make_grid(to_uint8(images_bchw), nrow=nrow)
    return save_png(grid, path, upscale=view_upscale(images_bchw.shape[-1]))
