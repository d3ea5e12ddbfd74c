"""Defaults that follow the data: settings ``gandist train`` picks from the image side when the
user left them alone.

gandist's defaults (batch 32, DCGAN's D with BatchNorm) were measured on the 16 px digits, where
they reach CAS/real 0.968. On the development sets that no setting was tuned on they do not carry
over: at 28 and 32 px (``benchmarks/devsets.py``, 2026-12-06, chosen on ``val``) the conditional
dcgan with them reached CAS/real 0.702 (gray28) and 0.745 (colour32) on val, and spectral norm on
D with batch 64 reached 0.855 and 0.856 (0.845 and 0.839 on test, read once). So from
``LARGE_SIDE`` px up, a conditional dcgan GAN gets ``LARGE_IMAGE_SETTINGS`` for each of those keys
that the YAML file and the overrides do not set; below it, the measured digits defaults stay.
Other models, the semi-supervised objective and unconditional runs were not measured, so the
rule leaves them alone. Each change is printed as a notice.
"""

from __future__ import annotations

from typing import Any, Callable

LARGE_SIDE = 28
LARGE_IMAGE_SETTINGS: dict[str, Any] = {"model.spectral_norm_d": "on", "train.batch_size": 64}
# The built-in sets' sides, so that a dry run need not build a built-in set to learn its size
# (tests/test_size_defaults.py checks them against the sets themselves).
BUILTIN_SIDES = {"digits": 16, "gray28": 28, "colour32": 32, "colour64": 64}
# What the keys hold when left alone (the dataclass defaults), so a value set some other way stays.
_UNSET = {"model.spectral_norm_d": "auto", "train.batch_size": 32}


def _get(cfg: Any, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def rule_applies(cfg: Any, explicitly_set: set[str]) -> bool:
    """Whether the image side can change anything: the measured model and objective, and a key left alone."""
    return (cfg.model.name == "dcgan" and cfg.model.conditional and cfg.train.objective == "gan"
            and any(k not in explicitly_set and _get(cfg, k) == _UNSET[k] for k in LARGE_IMAGE_SETTINGS))


def resolve_size_defaults(cfg: Any, explicitly_set: set[str], image_side: Callable[[], int]) -> str:
    """Apply the rule to ``cfg`` in place; returns a notice for the log (or "").

    ``image_side`` is called only when the rule could change something: it reads the data's
    manifest (``data.image_size`` when set wins: it is the size the models are built for)."""
    if not rule_applies(cfg, explicitly_set):
        return ""
    side = cfg.data.image_size or image_side()
    if side < LARGE_SIDE:
        return ""
    changed = []
    for key, value in LARGE_IMAGE_SETTINGS.items():
        if key not in explicitly_set and _get(cfg, key) == _UNSET[key]:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, value)
            changed.append(f"{key}={value}")
    return (f"notice: {side} px images: set {' '.join(changed)} (measured better than the digits' defaults "
            f"from {LARGE_SIDE} px up, docs/models.md; set them yourself to choose otherwise)")


def data_image_side(data_cfg: Any) -> int:
    """The side of the images ``data.*`` names: the built-in set's, or the manifest's."""
    if not data_cfg.path.strip():
        return BUILTIN_SIDES[data_cfg.builtin]
    from gandist.data import resolve_dataset  # imports torch: only when the rule needs the size

    return resolve_dataset(data_cfg).image_size
