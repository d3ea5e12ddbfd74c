"""Read samples from one shard: a range of sample positions, undecoded, with placeholders for
samples the shard should hold (per the manifest) but does not deliver (truncated or missing file),
so that a reader's position in the stream never depends on damage it meets.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import partial
from typing import Iterator

import numpy as np
import webdataset as wds
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from gandist.data import images as im
from gandist.data import tarscan
from gandist.data.buffers import ReadBufferPool
from gandist.errors import DataError


@dataclass
class RawSample:
    """One per-image sample as stored: its members' bytes, or ``error`` when it cannot be read."""

    url: str
    key: str
    members: dict[str, bytes] | None
    error: str = ""


@dataclass
class RawBlock:
    """Images [lo, hi) of one block of a block shard (decoded: npy is cheap), or ``error``."""

    url: str
    key: str
    imgs: np.ndarray | None  # n x H x W x C uint8
    labels: np.ndarray | None  # n int64, None when unlabelled
    n: int
    error: str = ""
    # The pooled buffer ``imgs`` views (iter_blocks with a pool), for the consumer to give back
    # once no array views it; None when the images own their memory.
    buffer: bytearray | None = None


def _members(url: str, select, buffer_for=None) -> Iterator[tuple[str, str, bytes | memoryview]]:
    """(key, ext, bytes) of the selected members of a tar at ``url`` (local path or ``pipe:``).
    Local uncompressed tars go through :mod:`gandist.data.tarscan` (a few times less Python per
    member than ``tarfile``), which reads large members into ``buffer_for``'s views when given;
    anything else through webdataset's opener and tar iterator. Errors propagate to the caller."""
    if "://" not in url and not url.startswith("pipe:") and tarscan.is_plain_tar(url):
        try:
            for name, data in tarscan.iter_members(url, select, buffer_for):
                key, ext = base_plus_ext(name)
                if key is None:
                    continue
                yield key, ext.lower(), data
        except _StopShard:
            pass
        return
    stream = wds.gopen(url, "rb")
    try:
        for m in tar_file_iterator(stream, select_files=select):
            key, ext = base_plus_ext(m["fname"])
            if key is None:
                continue
            yield key, ext.lower(), m["data"]
    except _StopShard:
        pass
    finally:
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - a pipe closed early exits with SIGPIPE status; data already read is fine
            pass


class _StopShard(Exception):
    """Raised by the member selector past the last wanted sample: stops reading the tar early."""


class _GroupCounter:
    """``select_files`` predicate: numbers member groups (samples) by key as the tar streams by,
    and selects only those in [start, stop), so skipped samples are never copied out of the tar."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop
        self.index = -1
        self.last_key: str | None = None
        self.more_after_stop = False  # the tar holds a sample (group) at index ``stop`` or later

    def __call__(self, fname: str) -> bool:
        key, _ = base_plus_ext(fname)
        if key != self.last_key:
            self.index += 1
            self.last_key = key
            if self.index >= self.stop:
                self.more_after_stop = True
                raise _StopShard
        return self.start <= self.index < self.stop


def iter_samples(url: str, start: int, stop: int, count: int | None = None) -> Iterator[RawSample]:
    """Samples [start, stop) of a per-image shard; always exactly ``stop - start`` items.
    ``count``: the shard's sample count per the manifest; reading to it checks that no sample follows."""
    sel = _GroupCounter(start, stop)
    made = 0
    cur_key, cur = None, {}
    error = ""
    try:
        for key, ext, data in _members(url, sel):
            if key != cur_key:
                if cur_key is not None:
                    yield RawSample(url, cur_key, cur)
                    made += 1
                cur_key, cur = key, {}
            cur[ext] = data
        # Known before the last sample is handed out: a consumer may stop right after it.
        surplus = count is not None and stop >= count and sel.more_after_stop
        if surplus:
            raise_more_than_manifest(url, count)
        if cur_key is not None:
            yield RawSample(url, cur_key, cur)
            made += 1
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated/unreadable tar: the rest become placeholders
        error = f"{type(e).__name__}: {e}"
    for i in range(start + made, stop):
        why = error or "shard holds fewer samples than its manifest says (truncated?)"
        yield RawSample(url, f"#{i}", None, error=f"sample #{i} missing: {why}")


def raise_more_than_manifest(url: str, count: int) -> None:
    # Epoch plans split data by the manifest's counts: reading on would leave the rest unread, silently.
    raise DataError(f"shard {url} holds more samples than the {count} its manifest lists; the manifest is wrong "
                    "(re-create it with `gandist shards make`, or check it with `gandist shards verify`)")


def _image_buffer(pool: ReadBufferPool, name: str, size: int) -> memoryview | None:
    # Only the images: labels are copied to int64 at once, so their bytes are never handed back.
    return pool.take(size) if name.lower().endswith(".imgs.npy") else None


def iter_blocks(url: str, start: int, stop: int, block_size: int, count: int,
                pool: ReadBufferPool | None = None) -> Iterator[RawBlock]:
    """Images [start, stop) of a block shard as block slices, covering exactly ``stop - start``.
    With ``pool``, image members are read into its buffers and each block names its ``buffer``
    (the caller gives it back to the pool when done with the images)."""
    first, last = start // block_size, (stop - 1) // block_size
    sel = _GroupCounter(first, last + 1)
    pos = start
    cur_key, cur = None, {}
    error = ""

    def emit(j: int, key: str, members: dict[str, bytes]) -> RawBlock:
        lo_img, hi_img = j * block_size, min((j + 1) * block_size, count)
        a, b = max(lo_img, start), min(hi_img, stop)
        try:
            imgs = load_npy(members["imgs.npy"])
            labels = load_npy(members["labels.npy"]) if "labels.npy" in members else None
            if imgs.ndim != 4 or imgs.dtype != np.uint8 or len(imgs) != hi_img - lo_img:
                raise ValueError(f"block has shape {imgs.shape} {imgs.dtype}, expected {hi_img - lo_img} uint8 NHWC images")
            if labels is not None and len(labels) != len(imgs):
                raise ValueError(f"block has {len(labels)} labels for {len(imgs)} images")
            sl = slice(a - lo_img, b - lo_img)
            data = members["imgs.npy"]
            buffer = data.obj if isinstance(data, memoryview) else None
            return RawBlock(url, key, imgs[sl], None if labels is None else labels[sl].astype(np.int64), b - a,
                            buffer=buffer)
        except Exception as e:  # noqa: BLE001 - a damaged block: its images are skipped and counted
            return RawBlock(url, key, None, None, b - a, error=f"block {key}: {type(e).__name__}: {e}")

    try:
        for key, ext, data in _members(url, sel, None if pool is None else partial(_image_buffer, pool)):
            if key != cur_key:
                if cur_key is not None:
                    blk = emit(pos // block_size, cur_key, cur)
                    pos += blk.n
                    yield blk
                cur_key, cur = key, {}
            cur[ext] = data
        if stop >= count and sel.more_after_stop:  # before the last block: a consumer may stop right after it
            raise_more_than_manifest(url, count)
        if cur_key is not None and pos < stop:
            blk = emit(pos // block_size, cur_key, cur)
            pos += blk.n
            yield blk
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001
        error = f"{type(e).__name__}: {e}"
    if pos < stop:
        why = error or "shard holds fewer blocks than its manifest says (truncated?)"
        yield RawBlock(url, f"#{pos}", None, None, stop - pos, error=f"images #{pos}..#{stop - 1} missing: {why}")


# Parsed npy headers, keyed by their bytes: the blocks of a shard share one header (shape and
# dtype), so numpy's header parser (ast.literal_eval, ~0.2 ms) runs once per shape, not per block.
_NPY_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, ...], bool]] = {}


def load_npy(data: bytes | memoryview) -> np.ndarray:
    """``np.load(BytesIO(data), allow_pickle=False)`` as a view of ``data`` (no copy; read-only
    for ``bytes``, writable for a view of a ``bytearray``)."""
    fp = io.BytesIO(bytes(data[:16]))  # the magic and the header length; only the header is copied
    version = np.lib.format.read_magic(fp)
    if version not in ((1, 0), (2, 0)):  # 3.0: utf-8 field names; rare, numpy reads it
        return np.load(io.BytesIO(bytes(data)), allow_pickle=False)
    start = fp.tell()
    header_len = int.from_bytes(bytes(data[start: start + (2 if version == (1, 0) else 4)]), "little")
    end = start + (2 if version == (1, 0) else 4) + header_len
    key = bytes(data[:end])
    parsed = _NPY_HEADERS.get(key)
    if parsed is None:
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        fp = io.BytesIO(key)
        np.lib.format.read_magic(fp)
        shape, fortran, dtype = read_header(fp)  # numpy's own parser: validates the header dict
        if dtype.hasobject:
            raise ValueError("npy member holds Python objects (not allowed)")
        parsed = (dtype, tuple(shape), bool(fortran))
        if len(_NPY_HEADERS) > 256:
            _NPY_HEADERS.clear()
        _NPY_HEADERS[key] = parsed
    dtype, shape, fortran = parsed
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - end < count * dtype.itemsize:
        raise ValueError(f"npy member is cut short ({len(data) - end} bytes for {count} x {dtype})")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=end)
    return arr.reshape(shape, order="F" if fortran else "C")


def decode_sample(s: RawSample, num_classes: int, min_size: int = 0, jpeg_decoder: str = "pil") -> tuple[np.ndarray, int]:
    """RawSample -> (HWC uint8 image, label or -1). Raises ValueError naming what is wrong.
    ``min_size``/``jpeg_decoder``: see :func:`gandist.data.images.decode`."""
    if s.members is None:
        raise ValueError(s.error)
    exts = [e for e in im.IMAGE_EXTS if e in s.members]
    if not exts:
        raise ValueError(f"no image member (has {', '.join(sorted(s.members)) or 'nothing'})")
    try:
        a = im.decode(s.members[exts[0]], exts[0], min_size, jpeg_decoder)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{exts[0]} does not decode: {type(e).__name__}: {e}") from None
    label = -1
    if num_classes:
        if "cls" not in s.members:
            raise ValueError("missing label (.cls)")
        try:
            label = int(s.members["cls"].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"label {s.members['cls'][:20]!r} is not an integer") from None
        if not 0 <= label < num_classes:
            raise ValueError(f"label {label} out of range 0..{num_classes - 1}")
    return a, label


def check_block_labels(b: RawBlock, num_classes: int) -> str:
    if num_classes:
        if b.labels is None:
            return f"block {b.key}: missing labels.npy"
        if b.labels.size and (b.labels.min() < 0 or b.labels.max() >= num_classes):
            return f"block {b.key}: labels out of range 0..{num_classes - 1}"
    return ""


def missing_shards(urls: list[str]) -> list[str]:
    import os

    return [u for u in urls if not u.startswith("pipe:") and "://" not in u and not os.path.exists(u)]


__all__ = ["RawSample", "RawBlock", "iter_samples", "iter_blocks", "decode_sample", "missing_shards", "DataError"]
