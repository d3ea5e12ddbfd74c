"""Read the regular members of a local, uncompressed tar shard, in order, with little Python per member.

Why not ``tarfile`` (through webdataset's ``tar_file_iterator``): for a 32x32 PNG of ~3 KB it
builds a ``TarInfo`` with a dozen parsed fields, a member list and an extraction file object per
member, and that was ~40 % of the per-image loader's time in the profile (``tarfile.nts``,
``frombuf``, ``_Stream.read``). A shard member only needs its name and bytes: this reader parses
those two fields (plus the header checksum, so damage is still detected) and reads or skips the
data. Anything it does not expect (a compressed file, a special member type) makes
:func:`is_plain_tar` false or raises, and the caller uses webdataset's reader instead.
"""

from __future__ import annotations

import os
import re
from typing import BinaryIO, Callable, Iterator

BLOCK = 512
# webdataset skips these names (its ``skip_meta`` and ``__key__``-style metadata members).
_META = re.compile(r"__[^/]*__($|/)")


class TarFormatError(ValueError):
    """The bytes are not the tar this reader handles (or the shard is damaged)."""


def is_plain_tar(path: str) -> bool:
    """True when ``path`` is a local file whose first block is a valid tar header (not gzip etc.)."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(BLOCK)
    except OSError:
        return False
    return len(hdr) == BLOCK and _checksum_ok(hdr)


def _checksum_ok(hdr: bytes) -> bool:
    field = hdr[148:156].split(b"\0", 1)[0].strip()
    try:
        want = int(field, 8)
    except ValueError:
        return False
    # The checksum counts its own 8 bytes as spaces (POSIX ustar).
    return sum(hdr) - sum(hdr[148:156]) + 8 * 32 == want


def _number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 for sizes >= 8 GiB
        n = int.from_bytes(field[1:], "big")
        return -n if field[:1] == b"\xff" else n
    field = field.split(b"\0", 1)[0].strip()
    return int(field, 8) if field else 0


def _pax_path(data: bytes) -> str | None:
    """The ``path`` record of a pax extended header ("<len> path=<name>\\n" records)."""
    pos, path = 0, None
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1: pos + length - 1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8")
        pos += length
    return path


def iter_members(path: str, select: Callable[[str], bool] | None = None,
                 buffer_for: Callable[[str, int], memoryview | None] | None = None) -> Iterator[tuple[str, bytes | memoryview]]:
    """(name, bytes) of each regular member of the tar file ``path`` that ``select`` accepts; the
    data of the others is skipped without copying. Raises TarFormatError on a bad header or a
    member cut short (a truncated shard); ends quietly at the end-of-archive block or at EOF on a
    member boundary, as ``tarfile`` does. Exceptions ``select`` raises propagate (they stop the read).

    ``buffer_for(name, size)``: a writable view of ``size`` bytes to read member ``name`` into
    (yielded instead of new ``bytes``), or None for a new ``bytes`` object (see
    :mod:`gandist.data.buffers`)."""
    with open(path, "rb") as f:
        yield from _scan(f, os.fstat(f.fileno()).st_size, select, buffer_for)


def _scan(f: BinaryIO, file_size: int, select, buffer_for=None) -> Iterator[tuple[str, bytes | memoryview]]:
    long_name: str | None = None
    while True:
        hdr = f.read(BLOCK)
        if len(hdr) < BLOCK:
            if hdr:
                raise TarFormatError("unexpected end of data (tar header cut short)")
            return
        if hdr.count(0) == BLOCK:  # end-of-archive marker
            return
        if not _checksum_ok(hdr):
            raise TarFormatError("bad tar header checksum")
        size = _number(hdr[124:136])
        kind = hdr[156:157]
        padded = (size + BLOCK - 1) // BLOCK * BLOCK
        if kind in (b"L", b"x"):  # GNU long name / pax header: names the next member
            data = f.read(padded)
            if len(data) < padded:
                raise TarFormatError("unexpected end of data (long name cut short)")
            long_name = data[:size].split(b"\0", 1)[0].decode("utf-8") if kind == b"L" else _pax_path(data[:size])
            continue
        if long_name is not None:
            name, long_name = long_name, None
        else:
            name = hdr[:100].split(b"\0", 1)[0].decode("utf-8")
            if hdr[257:262] == b"ustar" and hdr[345]:
                name = hdr[345:500].split(b"\0", 1)[0].decode("utf-8") + "/" + name
        regular = kind in (b"0", b"\0", b"7")
        if regular and not _META.match(name) and (select is None or select(name)):
            view = buffer_for(name, size) if buffer_for is not None else None
            if view is None:
                data = f.read(size)
                got = len(data)
            else:
                got = f.readinto(view)
                data = view
            if got < size:
                raise TarFormatError(f"unexpected end of data in member {name}")
            if padded > size:
                f.seek(padded - size, 1)
            yield name, data
        elif padded:
            # seek() past the end does not fail: check the position against the file size.
            here = f.seek(padded, 1)
            if here > file_size:
                raise TarFormatError(f"unexpected end of data in member {name}")

