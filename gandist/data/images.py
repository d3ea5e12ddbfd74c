"""Image arrays: normalise layouts, encode for a shard, decode from one, convert size and channels.

Every image inside gandist's data code is a ``uint8`` numpy array in HWC layout (C in 1, 3, 4)
until it is batched; batches are ``uint8`` torch tensors in BCHW layout.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from gandist.data.layout import pil_to_hwc, to_hwc
from gandist.errors import DataError

# Extensions the writer and loader treat as images (lower case, as webdataset lowercases them).
IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "npy")
PIL_EXTS = ("png", "jpg", "jpeg", "webp")
_PIL_FORMATS = {"png": ("PNG",), "jpg": ("JPEG",), "jpeg": ("JPEG",), "webp": ("WEBP",)}


def hwc_to_pil(a: np.ndarray) -> Image.Image:
    a = to_hwc(a)
    if a.shape[2] == 1:
        return Image.fromarray(a[:, :, 0], mode="L")
    return Image.fromarray(a, mode="RGB" if a.shape[2] == 3 else "RGBA")


def encode(a: np.ndarray, fmt: str, jpg_quality: int = 95) -> bytes:
    """HWC uint8 -> bytes of a ``png``, ``jpg`` or ``npy`` member."""
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, to_hwc(a), allow_pickle=False)
        return buf.getvalue()
    img = hwc_to_pil(a)
    buf = io.BytesIO()
    if fmt == "png":
        # compress_level 1: ~3x faster to write than the default 6, files ~10-20% larger.
        img.save(buf, format="PNG", compress_level=1)
    elif fmt in ("jpg", "jpeg"):
        if img.mode == "RGBA":
            img = img.convert("RGB")
        img.save(buf, format="JPEG", quality=jpg_quality)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buf.getvalue()


def decode(data: bytes, ext: str, min_size: int = 0, jpeg_decoder: str = "pil") -> np.ndarray:
    """Bytes of an image member -> HWC uint8. Raises on anything undecodable. ``min_size``: a
    JPEG may come back smaller than stored, down to this size (see :mod:`gandist.data.jpeg`)."""
    if ext == "npy":
        a = np.load(io.BytesIO(data), allow_pickle=False)
        return to_hwc(a)
    if ext in ("jpg", "jpeg"):
        from gandist.data.jpeg import decode_jpeg

        return decode_jpeg(data, min_size, jpeg_decoder)
    # Naming the format skips PIL's probing of every registered plugin (measurable per small
    # image); a member whose extension lies about its format is still decoded by probing.
    try:
        img = Image.open(io.BytesIO(data), formats=_PIL_FORMATS.get(ext))
    except UnidentifiedImageError:
        img = Image.open(io.BytesIO(data))
    with img:
        img.load()
        return pil_to_hwc(img)


def center_crop_square(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return a[top : top + s, left : left + s]


def convert(a: np.ndarray, size: int, channels: int, crop: bool = True) -> np.ndarray:
    """HWC uint8 -> (size, size, channels) uint8: channel conversion, then centre crop to a
    square (when ``crop``; else stretch) and resize with antialiasing (PIL bicubic)."""
    a = convert_channels(a, channels)
    h, w = a.shape[:2]
    if h == size and w == size:
        return a
    if crop and h != w:
        a = center_crop_square(a)
    img = hwc_to_pil(a).resize((size, size), Image.BICUBIC)
    return to_hwc(np.asarray(img))


def convert_channels(a: np.ndarray, channels: int) -> np.ndarray:
    c = a.shape[2]
    if c == channels:
        return a
    if c == 4:  # drop alpha (composite on black would darken; most RGBA datasets are opaque)
        a, c = a[:, :, :3], 3
        if channels == 3:
            return np.ascontiguousarray(a)
    if c == 1 and channels == 3:
        return np.repeat(a, 3, axis=2)
    if c == 3 and channels == 1:
        # ITU-R 601-2 luma, the transform PIL's convert("L") uses.
        x = a.astype(np.uint32)
        y = x[:, :, 0] * 299 + x[:, :, 1] * 587 + x[:, :, 2] * 114
        return ((y + 500) // 1000).astype(np.uint8)[:, :, None]
    raise DataError(f"cannot convert {c}-channel images to {channels} channels")


def convert_batch(x_bhwc: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Whole-batch version of :func:`convert` for block shards (uniform size); resize by PIL per image
    only when sizes differ (rare: blocks are written at the training size)."""
    b, h, w, c = x_bhwc.shape
    if c != channels:
        if c == 1 and channels == 3:
            x_bhwc = np.repeat(x_bhwc, 3, axis=3)
        elif c in (3, 4) and channels == 1:
            x = x_bhwc[..., :3].astype(np.uint32)
            x_bhwc = ((x[..., 0] * 299 + x[..., 1] * 587 + x[..., 2] * 114 + 500) // 1000).astype(np.uint8)[..., None]
        elif c == 4 and channels == 3:
            x_bhwc = np.ascontiguousarray(x_bhwc[..., :3])
        else:
            raise DataError(f"cannot convert {c}-channel images to {channels} channels")
    if h != size or w != size:
        x_bhwc = np.stack([convert(im, size, channels) for im in x_bhwc])
    return x_bhwc
