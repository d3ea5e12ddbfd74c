"""Trained generators outside training: load one from a run directory, a checkpoint folder or
an exported ``.safetensors`` file (``sample``, ``synth``, ``eval``), and export one (``export``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from gandist.checkpoint import load_tensor_file, read_manifest, resolve_checkpoint
from gandist.errors import CheckpointError
from gandist.fileio import atomic_write_text, atomic_write_with
from gandist.model_info import parse_model_info
from gandist.weights_file import read_safetensors


def load_generator(path: str | os.PathLike, ema: bool = True, log: Callable[[str], None] = print):
    """(G in eval mode on CPU, info) from a run directory, a checkpoint folder or an exported
    ``.safetensors`` file. ``info``: model_name, spec (ModelSpec), num_classes, class_names, step."""
    from gandist.models import ModelSpec, build_generator

    path = Path(path)
    if path.suffix == ".safetensors":
        state, metadata = read_safetensors(path, "generator file")
        meta_json = metadata.get("gandist")
        where = f"{path} (gandist metadata)"
        if meta_json is None:
            sidecar = path.with_suffix(".json")
            if not sidecar.is_file():
                raise CheckpointError(f"{path} has no gandist model config (metadata or {sidecar.name})")
            meta_json, where = sidecar.read_bytes(), str(sidecar)
        info = parse_model_info(meta_json, where)
    else:
        ckpt = resolve_checkpoint(path, log=log)
        info = parse_model_info((ckpt / "model.json").read_bytes(), str(ckpt / "model.json"))
        weights = load_tensor_file(ckpt / "model.pt")
        key = "G_ema" if ema else "G"
        if not isinstance(weights, dict) or not isinstance(weights.get(key), dict):
            raise CheckpointError(f"{ckpt / 'model.pt'}: no {key} state_dict in it")
        state = weights[key]
        info["step"] = read_manifest(ckpt)["step"]
    spec = ModelSpec(**info["spec"])
    try:
        g = build_generator(info["model_name"], spec)
        g.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:  # unknown model, weights of another shape
        raise CheckpointError(f"{path}: the weights do not rebuild a {info['model_name']!r} generator: {str(e)[:300]}") from None
    g.eval()
    info = dict(info, spec=spec)
    return g, info


def export_generator(run_dir: str | os.PathLike, out: str | os.PathLike, log: Callable[[str], None] = print) -> Path:
    """Write the EMA generator of a run as safetensors, its model config in the file's metadata
    and beside it as ``<out>.json``."""
    from safetensors.torch import save_file

    g, info = load_generator(run_dir, ema=True, log=log)
    meta = dict(info, spec=info["spec"].to_dict())
    meta_json = json.dumps(meta, indent=1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in g.state_dict().items()}
    atomic_write_with(out, lambda tmp: save_file(state, str(tmp), metadata={"gandist": meta_json}))
    atomic_write_text(out.with_suffix(".json"), meta_json + "\n")
    return out
