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


def load_generator(path: str | os.PathLike, ema: bool = True, log: Callable[[str], None] = print):
    """(G in eval mode on CPU, info) from a run directory, a checkpoint folder or an exported
    ``.safetensors`` file. ``info``: model_name, spec (ModelSpec), num_classes, class_names, step."""
    from gandist.models import ModelSpec, build_generator

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        if not path.is_file():
            raise CheckpointError(f"generator file not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            meta_json = (f.metadata() or {}).get("gandist")
        if meta_json is None:
            sidecar = path.with_suffix(".json")
            if not sidecar.is_file():
                raise CheckpointError(f"{path} has no gandist model config (metadata or {sidecar.name})")
            meta_json = sidecar.read_text()
        info = json.loads(meta_json)
        state = load_file(str(path))
    else:
        ckpt = resolve_checkpoint(path, log=log)
        info = json.loads((ckpt / "model.json").read_text())
        weights = load_tensor_file(ckpt / "model.pt")
        state = weights["G_ema" if ema else "G"]
        info["step"] = read_manifest(ckpt)["step"]
    spec = ModelSpec(**info["spec"])
    g = build_generator(info["model_name"], spec)
    g.load_state_dict(state)
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
