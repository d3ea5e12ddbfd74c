"""JPEG decoding: the fastest decoder present, and no more pixels than training needs.

Two decoders, both on libjpeg-turbo: Pillow (always there) and simplejpeg (``pip install
gandist[fast-jpeg]``), which skips Pillow's per-image file object and plugin machinery; on
small images that overhead is much of the cost. ``data.jpeg_decoder=auto`` takes simplejpeg
when it imports. Either decodes a JPEG stored larger than the training size by DCT scaling
(1/2, 1/4 or 1/8 of the pixels, never below the training size; Pillow's ``draft``,
simplejpeg's ``min_height``/``min_width``), and the exact resize follows in
``images.convert``. Gray JPEGs stay one channel, colour ones three, as Pillow gives them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from gandist.data.layout import pil_to_hwc
from gandist.errors import ConfigError

DECODERS = ("auto", "pil", "simplejpeg")


def simplejpeg_version() -> str | None:
    try:
        import simplejpeg
    except ImportError:
        return None
    return getattr(simplejpeg, "__version__", "?")


def resolve_decoder(name: str) -> str:
    """``auto`` -> the fastest decoder installed; an explicit one must be installed."""
    if name not in DECODERS:
        raise ConfigError(f"data.jpeg_decoder: must be one of {', '.join(DECODERS)} (got {name!r})")
    if name == "auto":
        return "simplejpeg" if simplejpeg_version() else "pil"
    if name == "simplejpeg" and not simplejpeg_version():
        raise ConfigError("data.jpeg_decoder: simplejpeg is not installed (pip install 'gandist[fast-jpeg]'), "
                          "or use data.jpeg_decoder=auto")
    return name


def describe(decoder: str) -> str:
    if decoder == "simplejpeg":
        return f"simplejpeg {simplejpeg_version()}"
    return f"Pillow {Image.__version__}"


def decode_jpeg(data: bytes, min_size: int = 0, decoder: str = "pil") -> np.ndarray:
    """JPEG bytes -> HWC uint8 (1 or 3 channels), at least ``min_size`` on both sides when the
    stored image is that large (0: full size). Raises on anything undecodable."""
    if decoder == "simplejpeg":
        a = _simplejpeg(data, min_size)
        if a is not None:
            return a
    return _pillow(data, min_size)


def _simplejpeg(data: bytes, min_size: int) -> np.ndarray | None:
    """None where Pillow should decode instead: CMYK/YCCK (Pillow converts those), or bytes
    that are not a JPEG at all (a member whose extension lies)."""
    import simplejpeg

    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("Gray", "YCbCr", "RGB"):
        return None
    # The scale Pillow's draft takes (1/2, 1/4, 1/8), asked for by its output size: left to
    # itself libjpeg-turbo would also use 3/8, 5/8, ..., and the two decoders' pixels would differ.
    k = dct_scale(h, w, min_size)
    a = simplejpeg.decode_jpeg(data, colorspace="GRAY" if colorspace == "Gray" else "RGB",
                               min_height=-(-h // k), min_width=-(-w // k))
    return a if a.ndim == 3 else a[:, :, None]


def dct_scale(h: int, w: int, min_size: int) -> int:
    """The largest k in 1, 2, 4, 8 that keeps an h x w JPEG decoded at 1/k at least ``min_size``
    on both sides (Pillow's ``draft`` rule)."""
    k = 1
    while min_size and k < 8 and -(-h // (2 * k)) >= min_size and -(-w // (2 * k)) >= min_size:
        k *= 2
    return k


def _pillow(data: bytes, min_size: int) -> np.ndarray:
    try:
        img = Image.open(io.BytesIO(data), formats=("JPEG",))
    except UnidentifiedImageError:
        img = Image.open(io.BytesIO(data))
    with img:
        if min_size and img.format == "JPEG" and dct_scale(img.height, img.width, min_size) > 1:
            img.draft(img.mode, (min_size, min_size))  # (a call that would not scale costs 6 % at 64 px)
        img.load()
        return pil_to_hwc(img)
