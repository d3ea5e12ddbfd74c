"""Writing files so that a reader sees the old content or the new, never half; and hashing them.

Every file gandist writes that someone may read while it is written, or that must survive a
crash (configs, reports, manifests, checkpoints, exports), goes through ``atomic_write``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Callable, Iterator


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (the directory entry, not just the file data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the body returns, the temp file replaces ``path``
    (fsynced first). If the body raises, the temp file is removed and ``path`` is untouched.

    For writers that want a path, not bytes (``np.savez``, ``safetensors.save_file``, PIL)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], object], fsync: bool = True) -> None:
    """``write(tmp_path)`` then rename over ``path`` (see ``atomic_path``)."""
    with atomic_path(path, fsync=fsync) as tmp:
        write(tmp)


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks (shards and checkpoints can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()
