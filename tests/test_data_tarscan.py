"""The small tar reader the loader uses for local shards: same members as ``tarfile`` (long names
in both pax and GNU form, directories skipped), and damage raises instead of passing silently."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from webdataset.tariterators import tar_file_iterator

from gandist.data import tarscan


def _write(path: Path, fmt: int, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w", format=fmt) as tar:
        d = tarfile.TarInfo("adir")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


MEMBERS = {
    "000001.png": b"x" * 700,
    "000001.cls": b"3",
    "__index__": b"{}",  # webdataset skips metadata members; so does the scanner
    "deep/" * 30 + "000002.npy": b"y" * 512,  # > 100 characters: a long-name record
    "000003.png": b"",
}


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_same_members_as_tarfile(tmp_path, fmt):
    members = dict(MEMBERS)
    if fmt == tarfile.USTAR_FORMAT:  # ustar splits long names into prefix + name (<= 255 chars)
        members.pop("deep/" * 30 + "000002.npy")
        members["deep/" * 20 + "000002.npy"] = b"y" * 512
    path = tmp_path / "a.tar"
    _write(path, fmt, members)
    assert tarscan.is_plain_tar(str(path))
    got = list(tarscan.iter_members(str(path)))
    with open(path, "rb") as f:
        want = [(m["fname"], m["data"]) for m in tar_file_iterator(f)]
    assert got == want and len(got) == len(members) - 1
    assert list(tarscan.iter_members(str(path), select=lambda n: n.endswith(".cls"))) == [("000001.cls", b"3")]


def test_truncated_and_damaged_tars_raise(tmp_path):
    path = tmp_path / "a.tar"
    _write(path, tarfile.PAX_FORMAT, {"000001.png": b"x" * 3000, "000002.png": b"z" * 3000})
    data = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[:2500])  # inside the first member's data
    with pytest.raises(tarscan.TarFormatError, match="end of data"):
        list(tarscan.iter_members(str(cut)))
    bad = bytearray(data)
    second = data.index(b"000002.png")
    bad[second + 130] ^= 0x01  # a size digit of the second header: checksum no longer matches
    (tmp_path / "bad.tar").write_bytes(bytes(bad))
    it = tarscan.iter_members(str(tmp_path / "bad.tar"))
    assert next(it)[0] == "000001.png"
    with pytest.raises(tarscan.TarFormatError, match="checksum"):
        next(it)


def test_compressed_or_foreign_files_are_not_plain_tars(tmp_path):
    import gzip

    path = tmp_path / "a.tar"
    _write(path, tarfile.PAX_FORMAT, {"000001.png": b"x"})
    gz = tmp_path / "a.tar.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert not tarscan.is_plain_tar(str(gz))
    assert not tarscan.is_plain_tar(str(tmp_path / "missing.tar"))
