"""Write samples into WebDataset tar shards plus ``manifest.json``.

Shards are ``{out}/000000.tar, 000001.tar, ...``. Per-image formats store ``{key}.png|jpg|npy``
(+ ``{key}.cls`` when labelled), the layout every WebDataset reader understands. The ``blocks``
format stores ``{key}.imgs.npy`` (N x H x W x C uint8) + ``{key}.labels.npy`` (N int64) per tar
member group: one member per N images removes the per-sample Python cost that caps small-image
loading (docs/library_notes.md, note 8).

Writing is resumable: every finished shard is written to a temporary name, renamed into place
and recorded in ``.progress.jsonl``; a re-run with the same options skips those shards (and the
source items they consumed) and continues. Tars are written with fixed mtime/owner so the same
input gives byte-identical shards (and sha256s).
"""

from __future__ import annotations

import datetime
import functools
import io
import itertools
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import webdataset as wds

from gandist.data import images as im
from gandist.data.manifest import (
    FORMAT,
    MANIFEST_NAME,
    image_stats,
    parse_shape_key,
    read_manifest,
    shape_key,
    write_manifest,
)
from gandist.errors import DataError
from gandist.fileio import sha256_file

PROGRESS_NAME = ".progress.jsonl"
FORMATS = ("png", "jpg", "npy", "blocks")


@dataclass
class SourceItem:
    """A sample still on disk: loaded (in a writer worker process) only when it is written.

    ``path``: image file; ``label``: class index or None. ``load`` returns the HWC uint8 array, or the
    original bytes and extension when the writer keeps the original format.
    """

    path: str
    label: int | None = None

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()


@dataclass
class WriteOptions:
    fmt: str = "png"
    """Member format: png, jpg, npy (raw HWC array) or blocks."""
    jpg_quality: int = 95
    resize: int = 0
    """Resize every image to resize x resize at write time; 0: keep."""
    center_crop: bool = False
    """With ``resize``: centre-crop to a square first (else stretch)."""
    keep_original_format: bool = False
    """Store source files' bytes unchanged (png/jpg/webp) when no resize is asked."""
    channels: int = 0
    """Convert to 1 or 3 channels at write time; 0: keep (RGBA/CMYK/palette become RGB)."""

    def validate(self) -> None:
        if self.fmt not in FORMATS:
            raise DataError(f"--format: unknown format {self.fmt!r}; allowed values: {', '.join(FORMATS)}")
        if self.keep_original_format and self.fmt == "blocks":
            raise DataError("--keep-original-format cannot be combined with --format blocks (blocks are raw arrays)")
        if self.resize < 0:
            raise DataError(f"--resize: must be >= 0 (got {self.resize})")
        if not 1 <= self.jpg_quality <= 100:
            raise DataError(f"--jpg-quality: must be in 1..100 (got {self.jpg_quality})")


@dataclass
class _Prepared:
    key: str
    members: dict[str, bytes] | None  # encoded members (per-image formats)
    array: np.ndarray | None  # HWC image (blocks format)
    label: int | None
    shape: tuple[int, int, int] | None
    error: str = ""


def _prepare(item: Any, opts: WriteOptions) -> _Prepared:
    """Load/convert/encode one sample. Runs in a writer worker process when ``--workers`` > 0."""
    key, payload, label = item
    try:
        if isinstance(payload, SourceItem):
            raw = payload.read_bytes()
            ext = Path(payload.path).suffix.lower().lstrip(".")
            if opts.keep_original_format and not opts.resize and not opts.channels and ext in im.PIL_EXTS:
                from PIL import Image

                with Image.open(io.BytesIO(raw)) as img:
                    img.verify()  # cheap integrity check, no full decode
                with Image.open(io.BytesIO(raw)) as img:
                    w, h = img.size
                    c = {"L": 1, "RGB": 3, "RGBA": 4}.get(img.mode, 3)
                return _Prepared(key, {("jpg" if ext == "jpeg" else ext): raw}, None, label, (h, w, c))
            a = im.decode(raw, "npy" if ext == "npy" else ext)
        else:
            a = im.to_hwc(payload, where=f"sample {key}")
        if opts.channels:
            a = im.convert_channels(a, opts.channels)
        elif a.shape[2] == 4 and opts.fmt in ("jpg", "blocks"):
            a = im.convert_channels(a, 3)
        if opts.resize:
            a = im.convert(a, opts.resize, a.shape[2], crop=opts.center_crop)
        shape = tuple(int(v) for v in a.shape)
        if opts.fmt == "blocks":
            return _Prepared(key, None, np.ascontiguousarray(a), label, shape)
        ext = opts.fmt
        return _Prepared(key, {ext: im.encode(a, ext, opts.jpg_quality)}, None, label, shape)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - an unreadable source file is skipped and counted
        where = payload.path if isinstance(payload, SourceItem) else f"sample {key}"
        return _Prepared(key, None, None, label, None, error=f"{where}: {type(e).__name__}: {e}")


def _check_key(key: str) -> str:
    key = str(key)
    if not key or "." in key or "/" in key:
        raise DataError(f"sample key {key!r}: keys must be non-empty and contain no '.' or '/' (webdataset splits names at the first dot)")
    return key


class _ShardSink:
    """Collects prepared samples into one shard file; knows its count, bytes and statistics."""

    def __init__(self, out_dir: Path, index: int, opts: WriteOptions, block_size: int):
        self.name = f"{index:06d}.tar"
        self.path = out_dir / self.name
        self.tmp = out_dir / f".{self.name}.{os.getpid()}.tmp"
        self.opts = opts
        self.block_size = block_size
        self.file = open(self.tmp, "wb")
        # Fixed mtime/owner: identical input gives identical bytes, so sha256s are reproducible.
        self.tar = wds.TarWriter(self.file, encoder=False, mtime=0, user="gandist", group="gandist", mode=0o444)
        self.num_samples = 0
        self.num_bytes = 0
        self.class_counts: dict[int, int] = {}
        self.shapes: dict[str, int] = {}
        self.block: list[_Prepared] = []
        self.block_shape: tuple[int, int, int] | None = None

    def add(self, p: _Prepared) -> None:
        self.num_samples += 1
        if p.label is not None:
            self.class_counts[p.label] = self.class_counts.get(p.label, 0) + 1
        k = shape_key(p.shape)
        self.shapes[k] = self.shapes.get(k, 0) + 1
        if self.opts.fmt == "blocks":
            if self.block_shape is None:
                self.block_shape = p.shape
            elif p.shape != self.block_shape:
                raise DataError(
                    f"sample {p.key}: image shape {p.shape} differs from {self.block_shape}; block shards need one "
                    "size: pass --resize N (and --center-crop) or --channels"
                )
            self.block.append(p)
            if len(self.block) == self.block_size:
                self._flush_block()
            return
        members = dict(p.members)
        if p.label is not None:
            members["cls"] = str(int(p.label)).encode("ascii")
        self.num_bytes += self.tar.write({"__key__": p.key, **members})

    def _flush_block(self) -> None:
        if not self.block:
            return
        imgs = np.stack([p.array for p in self.block])  # N x H x W x C uint8
        members = {"imgs.npy": _npy_bytes(imgs)}
        if self.block[0].label is not None:
            members["labels.npy"] = _npy_bytes(np.array([p.label for p in self.block], dtype=np.int64))
        self.num_bytes += self.tar.write({"__key__": self.block[0].key, **members})
        self.block = []

    def estimate_bytes_with(self, p: _Prepared) -> int:
        add = sum(len(v) + 512 for v in (p.members or {}).values()) if p.members else (p.array.nbytes if p.array is not None else 0)
        return self.num_bytes + add + 1024

    def finish(self) -> dict[str, Any]:
        self._flush_block()
        self.tar.close()
        self.file.close()
        os.replace(self.tmp, self.path)
        return {
            "name": self.name,
            "num_samples": self.num_samples,
            "sha256": sha256_file(self.path),
            "num_bytes": self.path.stat().st_size,
            "class_counts": {str(k): v for k, v in sorted(self.class_counts.items())},
            "shapes": self.shapes,
        }

    def abort(self) -> None:
        try:
            self.tar.close()
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def write_shards(
    samples: Iterable[tuple[str, Any, int | None]],
    out_dir: str | os.PathLike,
    *,
    class_names: list[str] | tuple[str, ...] = (),
    shard_size: int = 1000,
    max_bytes: int = 0,
    fmt: str = "png",
    jpg_quality: int = 95,
    block_size: int = 256,
    resize: int = 0,
    center_crop: bool = False,
    keep_original_format: bool = False,
    channels: int = 0,
    workers: int = 0,
    progress: bool = False,
    num_samples_hint: int | None = None,
    command: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``samples`` — ``(key, image, label)`` with ``image`` a uint8 HW/HWC/CHW array or a
    :class:`SourceItem`, ``label`` an int in ``range(len(class_names))`` or None — as shards in
    ``out_dir`` and return the manifest (also written to ``out_dir/manifest.json``).

    ``shard_size``: samples per shard (rounded up to whole blocks for ``fmt="blocks"``);
    ``max_bytes``: also start a new shard before one would exceed this many bytes (0: no limit).
    ``workers`` > 0 loads and encodes in that many processes (order is kept). Samples must come
    in the same order on a re-run for resuming to be correct (sources sort and shuffle with a seed).
    """
    opts = WriteOptions(fmt=fmt, jpg_quality=jpg_quality, resize=resize, center_crop=center_crop,
                        keep_original_format=keep_original_format, channels=channels)
    opts.validate()
    if shard_size < 1:
        raise DataError(f"--shard-size: must be >= 1 (got {shard_size})")
    if block_size < 1:
        raise DataError(f"--block-size: must be >= 1 (got {block_size})")
    if fmt == "blocks":
        shard_size = -(-shard_size // block_size) * block_size
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    class_names = [str(c) for c in class_names]
    num_classes = len(class_names)
    fingerprint = {
        "options": asdict(opts), "shard_size": shard_size, "max_bytes": max_bytes, "block_size": block_size,
        "class_names": class_names, "extra": extra or {},
    }

    done = _read_progress(out, fingerprint)
    if done is None:  # finished before: the manifest is the answer
        return read_manifest(out / MANIFEST_NAME)
    source_pos = done[-1]["source_stop"] if done else 0
    num_skipped_before = done[-1]["num_unreadable_total"] if done else 0

    it: Iterator = itertools.islice(iter(samples), source_pos, None)
    prep = functools.partial(_prepare, opts=opts)
    pool = None
    if workers > 0:
        import multiprocessing as mp

        pool = mp.get_context("fork" if sys.platform == "linux" else "spawn").Pool(workers)
        prepared: Iterator[_Prepared] = pool.imap(prep, it, chunksize=8)
    else:
        prepared = map(prep, it)

    bar = None
    if progress:
        from gandist.progress import progress_bar

        bar = progress_bar(num_samples_hint, "shards make", unit="img", initial=source_pos)

    unreadable: list[str] = []
    num_unreadable = num_skipped_before
    sink: _ShardSink | None = None
    progress_file = open(out / PROGRESS_NAME, "a")
    if not done:
        progress_file.write(json.dumps({"fingerprint": fingerprint}) + "\n")
        progress_file.flush()
    try:
        for p in prepared:
            source_pos += 1
            if bar is not None:
                bar.update(1)
            if p.error:
                num_unreadable += 1
                if len(unreadable) < 20:
                    unreadable.append(p.error)
                continue
            _check_key(p.key)
            if p.label is not None and num_classes and not 0 <= p.label < num_classes:
                raise DataError(f"sample {p.key}: label {p.label} is out of range 0..{num_classes - 1}")
            if p.label is not None and not num_classes:
                raise DataError(f"sample {p.key}: has label {p.label} but no class names were given")
            if sink is not None and (
                sink.num_samples >= shard_size
                or (max_bytes and sink.num_samples and sink.estimate_bytes_with(p) > max_bytes
                    and (fmt != "blocks" or sink.num_samples % block_size == 0))
            ):
                _record(progress_file, done, sink.finish(), source_pos - 1, num_unreadable)
                sink = None
            if sink is None:
                sink = _ShardSink(out, len(done), opts, block_size)
            sink.add(p)
        if sink is not None and sink.num_samples:
            _record(progress_file, done, sink.finish(), source_pos, num_unreadable)
            sink = None
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        progress_file.close()
        if pool is not None:
            pool.terminate()
        if bar is not None:
            bar.close()

    if unreadable:
        print(f"shards make: skipped {num_unreadable} unreadable or non-image file(s), e.g.:", file=sys.stderr)
        for line in unreadable[:5]:
            print(f"  {line}", file=sys.stderr)
    if not done:
        (out / PROGRESS_NAME).unlink(missing_ok=True)
        raise DataError(f"no images to write into {out} ({num_unreadable} unreadable file(s) skipped)")

    manifest = _build_manifest(done, fingerprint, class_names, num_unreadable, command, extra)
    write_manifest(out, manifest)
    (out / PROGRESS_NAME).unlink(missing_ok=True)
    return manifest


def _record(f, done: list, shard: dict, source_stop: int, num_unreadable: int) -> None:
    shard = {**shard, "source_stop": source_stop, "num_unreadable_total": num_unreadable}
    done.append(shard)
    f.write(json.dumps(shard) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _read_progress(out: Path, fingerprint: dict) -> list[dict] | None:
    """Shards a previous run finished (verified on disk), [] to start fresh, None when complete."""
    manifest_path = out / MANIFEST_NAME
    progress_path = out / PROGRESS_NAME
    if manifest_path.exists() and not progress_path.exists():
        m = read_manifest(manifest_path)
        if m.get("writer") == fingerprint and all((out / s["name"]).exists() for s in m["shards"]):
            return None
        existing = sorted(p.name for p in out.glob("*.tar"))
        if existing:
            raise DataError(
                f"{out} already holds shards written with other options ({manifest_path}); "
                "choose another --out or delete it"
            )
        return []
    if not progress_path.exists():
        stray = sorted(p.name for p in out.glob("*.tar"))
        if stray:
            raise DataError(f"{out} already holds {len(stray)} shard(s) ({stray[0]}, ...) but no manifest; choose another --out or delete them")
        return []
    lines = [json.loads(line) for line in progress_path.read_text().splitlines() if line.strip()]
    if not lines or lines[0].get("fingerprint") != fingerprint:
        raise DataError(
            f"{out} holds a partial write with different options ({progress_path}); re-run with the same "
            "options to resume, or delete the directory"
        )
    done = []
    for shard in lines[1:]:
        path = out / shard["name"]
        # A shard whose file is missing or differs ends the usable prefix: re-write from there.
        if not path.exists() or path.stat().st_size != shard["num_bytes"] or sha256_file(path) != shard["sha256"]:
            break
        done.append(shard)
    for stale in out.glob(".*.tar.*.tmp"):
        stale.unlink()
    if len(done) < len(lines) - 1:
        progress_path.write_text("".join(json.dumps(x) + "\n" for x in [lines[0], *done]))
    if done:
        print(f"shards make: resuming after {len(done)} complete shard(s) in {out}", file=sys.stderr)
    return done


def _build_manifest(done, fingerprint, class_names, num_unreadable, command, extra) -> dict[str, Any]:
    shapes: dict[tuple[int, int, int], int] = {}
    class_counts = [0] * len(class_names)
    for s in done:
        for k, n in s["shapes"].items():
            shapes[parse_shape_key(k)] = shapes.get(parse_shape_key(k), 0) + n
        for k, n in s["class_counts"].items():
            class_counts[int(k)] += n
    opts = fingerprint["options"]
    m: dict[str, Any] = {
        "format": FORMAT,
        "sample_format": "original" if opts["keep_original_format"] else opts["fmt"],
        "num_samples": sum(s["num_samples"] for s in done),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "class_counts": class_counts if class_names else [],
        "image": image_stats(shapes),
        "num_unreadable_skipped": num_unreadable,
        "shards": [
            {k: s[k] for k in ("name", "num_samples", "sha256", "num_bytes", "class_counts")} for s in done
        ],
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "writer": fingerprint,
    }
    if opts["fmt"] == "blocks":
        m["block_size"] = fingerprint["block_size"]
    m.update(extra or {})
    return m
