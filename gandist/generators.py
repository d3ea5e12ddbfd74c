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

#: The files of an export folder, named as Hugging Face tooling expects them.
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"
EXPORT_CARD = "README.md"


def load_generator(path: str | os.PathLike, ema: bool = True, log: Callable[[str], None] = print):
    """(G in eval mode on CPU, info) from a run directory, a checkpoint folder or an exported
    ``.safetensors`` file. ``info``: model_name, spec (ModelSpec), num_classes, class_names, step."""
    from gandist.models import ModelSpec, build_generator

    path = Path(path)
    if path.is_dir() and (path / EXPORT_WEIGHTS).is_file():
        config_path = path / EXPORT_CONFIG
        if not config_path.is_file():
            raise CheckpointError(f"{path}: exported generator folder without {EXPORT_CONFIG}")
        info = parse_model_info(config_path.read_bytes(), str(config_path), allow_extra=True)
        state, _ = read_safetensors(path / EXPORT_WEIGHTS, "generator file")
    elif path.suffix == ".safetensors":
        state, metadata = read_safetensors(path, "generator file")
        meta_json = metadata.get("gandist")
        where = f"{path} (gandist metadata)"
        if meta_json is None:
            sidecar = path.with_suffix(".json")
            if not sidecar.is_file():
                raise CheckpointError(f"{path} has no gandist model config (metadata or {sidecar.name})")
            meta_json, where = sidecar.read_bytes(), str(sidecar)
        info = parse_model_info(meta_json, where, allow_extra=True)
    else:
        ckpt = resolve_checkpoint(path, log=log)
        info = parse_model_info((ckpt / "model.json").read_bytes(), str(ckpt / "model.json"))
        weights = load_tensor_file(ckpt / "model.pt")
        key = "G_ema" if ema else "G"
        if not isinstance(weights, dict) or not isinstance(weights.get(key), dict):
            raise CheckpointError(f"{ckpt / 'model.pt'}: no {key} state_dict in it")
        state = weights[key]
        info["step"] = read_manifest(ckpt)["step"]
    if not isinstance(info, dict) or "model_name" not in info or "spec" not in info:
        raise CheckpointError(f"{path}: no gandist model config (model_name, spec) found")
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
    """The older export form: the EMA generator as one safetensors file, its model config in the
    file's metadata and beside it as ``<out>.json``. ``export_folder`` is the default now."""
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


def export_folder(run_dir: str | os.PathLike, out: str | os.PathLike, *, classify_report: str | os.PathLike | None = None,
                  log: Callable[[str], None] = print) -> Path:
    """Write the EMA generator of a run as a folder Hugging Face tooling reads:
    ``model.safetensors`` (weights; the model config also in its metadata, so the file alone is
    enough), ``config.json`` (model config plus what the run measured) and ``README.md`` (a model
    card: data set, steps, image size, classes, FID/CAS with the extractor that measured them).

    ``classify_report``: a ``gandist classify`` output folder or its ``classify_report.json``,
    for the CAS; the FID comes from the run's ``eval.json`` (``gandist eval``) when present.
    """
    from safetensors.torch import save_file

    from gandist.version import __version__

    g, info = load_generator(run_dir, ema=True, log=log)
    spec = info["spec"]
    run_root = _run_root(Path(run_dir))
    run_config = _read_yaml(run_root / "config.yaml") if run_root else {}
    data = run_config.get("data", {})
    config = {
        "library_name": "gandist",
        "gandist_version": __version__,
        "model_name": info["model_name"],
        "spec": spec.to_dict(),
        "num_classes": spec.num_classes,
        "class_names": list(info.get("class_names") or []),
        "step": info.get("step"),
        "image_size": spec.image_size,
        "channels": spec.channels,
        "dataset": data.get("path") or (f"builtin:{data.get('builtin', 'digits')}" if data else None),
        "train_steps": run_config.get("train", {}).get("steps"),
        "metrics": _measured(run_root, classify_report),
    }
    config_json = json.dumps(config, indent=1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in g.state_dict().items()}
    atomic_write_with(out / EXPORT_WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"gandist": config_json}))
    atomic_write_text(out / EXPORT_CONFIG, config_json + "\n")
    atomic_write_text(out / EXPORT_CARD, model_card(config))
    return out


def _run_root(path: Path) -> Path | None:
    """The run directory of a run dir, its ckpt/ folder or one ckpt/step_* folder."""
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _measured(run_root: Path | None, classify_report: str | os.PathLike | None) -> dict:
    """What was measured about this generator, each number with what measured it."""
    out: dict = {}
    if run_root and (run_root / "eval.json").is_file():
        ev = json.loads((run_root / "eval.json").read_text())
        out["eval"] = {"extractor": ev.get("extractor"), "step": ev.get("step"), "num_generated": ev.get("num_generated"),
                       "num_real": ev.get("num_real"), **{k: ev.get("metrics", {}).get(k) for k in ("fid", "kid", "precision", "recall", "is") if k in ev.get("metrics", {})}}
    if classify_report is not None:
        path = Path(classify_report)
        path = path / "classify_report.json" if path.is_dir() else path
        if not path.is_file():
            raise CheckpointError(f"--classify-report: {path} not found (gandist classify writes DIR/classify_report.json)")
        report = json.loads(path.read_text())
        cas = report.get("cas", {}).get("synthetic")
        real = report.get("real", {}).get("real")
        if cas:
            out["cas"] = {"accuracy_mean": cas.get("accuracy_mean"), "accuracy_std": cas.get("accuracy_std"),
                          "real_accuracy_mean": (real or {}).get("accuracy_mean"),
                          "classifier": report.get("meta", {}).get("arch"), "report": str(path)}
    return out


def model_card(config: dict) -> str:
    """A Hugging Face model card (YAML front matter + Markdown) for an export folder."""
    classes = config["class_names"]
    metrics = config["metrics"]
    lines = [
        "---",
        "library_name: gandist",
        "tags:",
        "- gan",
        "- image-generation",
        "- gandist",
        "---",
        "",
        f"# {config['model_name']} generator ({config['image_size']}x{config['image_size']}, {config['channels']} channel(s))",
        "",
        "The EMA generator of a GAN trained with gandist and exported with `gandist export`.",
        "",
        "| | |",
        "| --- | --- |",
        f"| data set | `{config['dataset']}` |",
        f"| steps trained | {config['step']}" + (f" of {config['train_steps']}" if config.get("train_steps") else "") + " |",
        f"| image size | {config['image_size']} x {config['image_size']}, {config['channels']} channel(s) |",
        f"| classes | {len(classes)}: {', '.join(map(str, classes))} |" if classes else "| classes | unconditional |",
        f"| latent | {config['spec']['z_dim']}-d standard normal |",
        "",
        "## Measured",
        "",
    ]
    ev, cas = metrics.get("eval"), metrics.get("cas")
    if ev:
        numbers = ", ".join(f"{k.upper() if k in ('fid', 'kid', 'is') else k} {ev[k]:.4g}" for k in ("fid", "kid", "precision", "recall", "is") if ev.get(k) is not None)
        lines.append(f"- {numbers} (features: `{ev['extractor']}`, {ev.get('num_generated')} generated vs {ev.get('num_real')} real images, step {ev.get('step')}). "
                     "Numbers from different extractors are not comparable.")
    if cas:
        real = f"; the same classifier trained on real data: {100 * cas['real_accuracy_mean']:.1f} %" if cas.get("real_accuracy_mean") is not None else ""
        lines.append(f"- CAS (a `{cas.get('classifier') or 'gandist classify'}` classifier trained on synthetic images only, tested on held-out real images): "
                     f"{100 * cas['accuracy_mean']:.1f} ± {100 * (cas.get('accuracy_std') or 0):.1f} %{real}.")
    if not ev and not cas:
        lines.append("- nothing measured yet: run `gandist eval` (FID) and `gandist classify --protocol cas` (CAS) before exporting.")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from gandist import load_generator",
        "",
        'g = load_generator("path/to/this/folder")',
        "images = g.sample(16, labels=None, truncation=None, seed=0)  # uint8, N x C x H x W",
        "```",
        "",
        f"Without gandist: `safetensors.torch.load_file(\"{EXPORT_WEIGHTS}\")` gives the weights; "
        f"`{EXPORT_CONFIG}` (also in the safetensors metadata under `gandist`) describes the network.",
        "",
    ]
    return "\n".join(lines)
