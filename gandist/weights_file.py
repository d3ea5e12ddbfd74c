"""Reading ``.safetensors`` files (exported generators, domain classifiers) that may be damaged.

Every reader of a safetensors file goes through ``read_safetensors``: it turns anything wrong
with the file (a header size past the end, bad JSON, offsets out of range, a truncated body) into
a CheckpointError naming the file (exit 2). The format holds only tensors and string metadata:
nothing in it can run code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gandist.errors import CheckpointError


def read_safetensors(path: str | os.PathLike, what: str = "weights file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of the safetensors file ``path``; ``what`` names it in errors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            state = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for every kind of damage
        raise CheckpointError(f"{what} {path} is not a valid safetensors file: {type(e).__name__}: {str(e)[:300]}") from None
    return state, metadata
