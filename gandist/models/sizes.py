"""Which square image sides a convolutional G/D pair can make, and how.

Every model in the zoo builds its generator as one first stage to ``base x base`` followed by
doubling stages, and its discriminator as the mirror image. So a side is supported when it is
``base * 2**k`` with ``base`` in 4..7 and the side at least 8: 8, 12, 16, 20, 24, 28 (7*4),
32, 48 (6*8), 56, 64, 96, 112, 128 ... This module is pure arithmetic (no torch), so the CLI can
refuse a bad ``data.image_size`` at ``--dry-run`` before anything heavy is imported.
"""

from __future__ import annotations

from gandist.errors import ConfigError

MIN_BASE, MAX_BASE = 4, 7
MIN_SIDE = 8


def stage_plan(image_size: int) -> tuple[int, int] | None:
    """``(base, num_doublings)`` with ``base * 2**num_doublings == image_size``, or None.

    The largest base in 4..7 is chosen, so the first stage works at the largest resolution it
    can (28 -> (7, 2), 32 -> (4, 3), 48 -> (6, 3)).
    """
    if image_size < MIN_SIDE:
        return None
    side, doublings = image_size, 0
    while side % 2 == 0 and side > MAX_BASE:
        side //= 2
        doublings += 1
    if MIN_BASE <= side <= MAX_BASE and doublings >= 1:
        return side, doublings
    return None


def supported_sizes(limit: int = 128) -> list[int]:
    """Every supported side up to ``limit`` pixels, ascending."""
    return [s for s in range(MIN_SIDE, limit + 1) if stage_plan(s) is not None]


def check_image_size(model_name: str, image_size: int, source: str = "data.image_size") -> tuple[int, int]:
    """The stage plan for ``image_size``, or a ``ConfigError`` naming ``source``, the model and
    the sizes it supports (exit 2 through the CLI)."""
    plan = stage_plan(image_size)
    if plan is None:
        sizes = ", ".join(map(str, supported_sizes()))
        raise ConfigError(
            f"{source}: model {model_name!r} cannot make {image_size}x{image_size} images; it supports sides "
            f"base*2^k with base 4..7 and side >= {MIN_SIDE}: {sizes} (and larger ones of that form); "
            f"set data.image_size to one of them to resize the data"
        )
    return plan


def stage_sides(image_size: int) -> list[int]:
    """Feature-map sides of the stages, ``[base, 2*base, ..., image_size]``; [] when unsupported."""
    plan = stage_plan(image_size)
    if plan is None:
        return []
    base, num_doublings = plan
    return [base * 2**j for j in range(num_doublings + 1)]


def check_attention_resolution(model_name: str, image_size: int, resolution: int) -> None:
    """Refuse a ``model.attention_resolution`` that is not the side of one of the model's stages."""
    sides = stage_sides(image_size)
    if resolution and resolution not in sides:
        raise ConfigError(
            f"model.attention_resolution: {resolution} is not the side of a {model_name!r} stage for "
            f"{image_size}x{image_size} images; use one of {', '.join(map(str, sides))}, or 0 for no attention"
        )
