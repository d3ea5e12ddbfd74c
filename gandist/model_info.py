"""``model.json`` (and an exported generator's metadata): what rebuilds a generator without the
run's config. Read from files that may be damaged or hostile, so every field is checked here, in
one place, before anything is built from it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from gandist.errors import CheckpointError
from gandist.semisup.heads import HEADS, LEGACY_HEAD

#: Keys of model.json. An export adds ``step`` (the checkpoint's step).
KEYS = {"model_name", "spec", "num_classes", "class_names"}
OPTIONAL_KEYS = {"step", "data_image_size", "data_channels", "objective", "semisup"}
"""``data_image_size``/``data_channels``: the real data's own shape (``synth`` writes that size
when the run resized its data). ``objective``/``semisup``: a semi-supervised run's D and its
classes (``{"num_classes": K, "class_names": [...]}``)."""


def parse_model_info(text: str | bytes, where: str, allow_extra: bool = False) -> dict[str, Any]:
    """``text`` (JSON) as a checked model-info dict; CheckpointError naming ``where`` otherwise.
    The ``spec`` stays a dict (``gandist.models.ModelSpec(**info["spec"])`` builds from it).

    ``allow_extra``: an export's config also describes the run (data set, metrics, versions);
    those keys are kept unchecked. A checkpoint's model.json allows none: an unknown key there
    means the file is not what gandist wrote."""
    from gandist.models import ModelSpec

    try:
        info = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(info).__name__}")
    unknown = [] if allow_extra else sorted(set(info) - KEYS - OPTIONAL_KEYS)
    missing = sorted(KEYS - set(info))
    if unknown or missing:
        raise CheckpointError(f"{where}: " + "; ".join(
            ([f"unknown keys {unknown}"] if unknown else []) + ([f"missing keys {missing}"] if missing else [])))
    if not isinstance(info["model_name"], str) or not info["model_name"]:
        raise CheckpointError(f"{where}: model_name must be a non-empty string")
    spec = info["spec"]
    fields = {f.name: f for f in dataclasses.fields(ModelSpec)}
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if not isinstance(spec, dict) or set(spec) - set(fields) or required - set(spec):
        raise CheckpointError(f"{where}: spec must be an object with keys {sorted(fields)} (got {spec!r:.200})")
    for key, value in spec.items():
        # A None default marks an optional switch (d_spectral_norm: None = the model's own choice).
        want_bool = isinstance(fields[key].default, bool) or fields[key].default is None
        ok = (isinstance(value, bool) or (value is None and fields[key].default is None)) if want_bool else (
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1 << 20)
        if not ok:
            raise CheckpointError(f"{where}: spec.{key} must be {'true or false' if want_bool else 'an integer in [0, 2^20]'} (got {value!r:.100})")
    names = info["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{where}: class_names must be a list of strings")
    if not isinstance(info["num_classes"], int) or isinstance(info["num_classes"], bool) or info["num_classes"] != spec["num_classes"]:
        raise CheckpointError(f"{where}: num_classes must equal spec.num_classes ({spec['num_classes']})")
    if info.get("step") is not None and (not isinstance(info["step"], int) or isinstance(info["step"], bool) or info["step"] < 0):
        raise CheckpointError(f"{where}: step must be a non-negative integer")
    for key in ("data_image_size", "data_channels"):
        value = info.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1 << 20):
            raise CheckpointError(f"{where}: {key} must be an integer in [0, 2^20] (got {value!r:.100})")
    if info.get("objective") not in (None, "gan", "semisup"):
        raise CheckpointError(f"{where}: objective must be 'gan' or 'semisup' (got {info['objective']!r:.100})")
    semisup = info.get("semisup")
    if semisup is not None:
        k, names = (semisup.get("num_classes"), semisup.get("class_names")) if isinstance(semisup, dict) else (None, None)
        if (not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1 << 20 or not isinstance(names, list)
                or not all(isinstance(n, str) for n in names)):
            raise CheckpointError(f"{where}: semisup must be an object with num_classes (integer >= 1) and class_names (strings)")
        if semisup.get("head", LEGACY_HEAD) not in HEADS:
            raise CheckpointError(f"{where}: semisup.head must be one of {', '.join(HEADS)} (got {semisup['head']!r:.100})")
    return info
