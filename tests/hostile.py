"""Hostile files for the security tests: pickles that run code when fully unpickled, damaged
safetensors, and checkpoint manifests re-signed so that only the content is wrong."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import torch


class _RunsCode:
    """Unpickled in full, this touches ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def plant_pickle(path: Path, marker: Path) -> None:
    """Replace ``path`` by a torch file whose unpickling runs ``touch marker``."""
    torch.save({"state": _RunsCode(marker), "w": torch.zeros(2)}, path)


def resign_manifest(ckpt: Path) -> None:
    """Recompute sizes and sha256 in ``ckpt/MANIFEST.json``: anyone who can write the files can."""
    manifest_path = ckpt / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    for rel in manifest["files"]:
        data = (ckpt / rel).read_bytes()
        manifest["files"][rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest_path.write_text(json.dumps(manifest, indent=1))


def checkpoint_files(ckpt: Path, under: str = "") -> list[Path]:
    """Torch files of a checkpoint (``under`` a sub folder), as listed in its manifest."""
    files = json.loads((ckpt / "MANIFEST.json").read_text())["files"]
    return [ckpt / rel for rel in sorted(files) if rel.startswith(under) and rel.endswith(".pt")]


def damaged_safetensors(good: Path, out_dir: Path) -> dict[str, Path]:
    """Variants of the valid safetensors file ``good``, each damaged in one way."""
    data = good.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]

    def write(name: str, blob: bytes) -> Path:
        path = out_dir / f"{name}.safetensors"
        path.write_bytes(blob)
        return path

    def with_header(h: dict) -> bytes:
        raw = json.dumps(h).encode()
        return struct.pack("<Q", len(raw)) + raw + body

    out_of_range = json.loads(json.dumps(header))
    first = next(k for k in out_of_range if k != "__metadata__")
    out_of_range[first]["data_offsets"] = [0, len(body) + 4096]
    no_meta = {k: v for k, v in header.items() if k != "__metadata__"}
    bad_meta = dict(header, __metadata__={"gandist": "{not json"})
    return {
        "header_past_end": write("header_past_end", struct.pack("<Q", len(data) * 10) + data[8:]),
        "bad_json": write("bad_json", struct.pack("<Q", header_len) + b"{" * header_len + body),
        "offsets_out_of_range": write("offsets_out_of_range", with_header(out_of_range)),
        "no_gandist_metadata": write("no_gandist_metadata", with_header(no_meta)),
        "bad_gandist_metadata": write("bad_gandist_metadata", with_header(bad_meta)),
        "truncated": write("truncated", data[: len(data) // 2]),
        "empty": write("empty", b""),
    }
