"""Pixel layouts: any uint8 array or PIL image -> the HWC ``uint8`` array (C in 1, 3, 4) that
gandist's data code passes around. Its own module so the decoders (:mod:`gandist.data.images`,
:mod:`gandist.data.jpeg`) share it without importing each other."""

from __future__ import annotations

import numpy as np
from PIL import Image

from gandist.errors import DataError


def to_hwc(image: np.ndarray, where: str = "image") -> np.ndarray:
    """HW, HWC or CHW uint8 array -> HWC uint8 (C in 1, 3, 4)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise DataError(f"{where}: expected uint8 pixels, got {a.dtype} (scale to 0..255 first)")
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim != 3:
        raise DataError(f"{where}: expected an HW, HWC or CHW image, got shape {a.shape}")
    if a.shape[2] in (1, 3, 4):
        return a
    if a.shape[0] in (1, 3, 4):
        return np.ascontiguousarray(a.transpose(1, 2, 0))
    raise DataError(f"{where}: cannot tell the channel axis of shape {a.shape} (expected 1, 3 or 4 channels)")


def pil_to_hwc(img: Image.Image) -> np.ndarray:
    """PIL image in any mode -> HWC uint8 with 1 (L), 3 (RGB) or 4 (RGBA) channels."""
    if img.mode not in ("L", "RGB", "RGBA"):
        # CMYK, P (palette), I;16, LA, ... : convert to the nearest of the three.
        if img.mode in ("LA", "I", "I;16", "F", "1"):
            img = img.convert("L")
        elif "A" in img.mode or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
        else:
            img = img.convert("RGB")
    return to_hwc(np.asarray(img))
