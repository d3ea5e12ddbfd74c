"""Shards in object stores (``s3://``, ``gs://``, ``http(s)://``), read through fsspec into a
local cache of whole shards.

A shard is fetched once, streamed into a temporary file beside the cache while its sha256 is
computed, and kept only when size and digest match the manifest; an altered or truncated
download is fetched again and never reaches the loader. Cached files are named by the
manifest's digest, so a cache is reused across epochs, restarts and runs of the same shards,
and two shards never collide. The cache holds at most ``data.cache_limit_gb``: before a new
shard goes in, the least recently used ones go out (a shard in use stays readable by the process
that opened it: unlinking an open file on POSIX keeps its data). A failed request (server down,
connection reset, timeout) is retried ``data.remote_retries`` times with exponential backoff,
then the run stops with a :class:`~gandist.errors.DataError` (exit code 2) naming the URL.

Credentials and endpoints come from each client's usual environment: ``AWS_*`` variables or
``~/.aws`` for s3 (``AWS_ENDPOINT_URL`` for an S3-compatible server), ``GOOGLE_APPLICATION_CREDENTIALS``
for gs. The clients are extras: ``pip install 'gandist[s3]'`` (s3fs), ``'gandist[gcs]'`` (gcsfs),
``'gandist[http]'`` (aiohttp).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from gandist.errors import DataError

log = logging.getLogger("gandist.data")

OBJECT_SCHEMES = ("s3://", "gs://", "gcs://", "http://", "https://")
_CHUNK_BYTES = 4 << 20
_EXTRA = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}

T = TypeVar("T")


def is_object_url(url: str) -> bool:
    return url.startswith(OBJECT_SCHEMES)


def backoff_seconds(attempt: int) -> float:
    """Wait before retry ``attempt`` (1, 2, ...): 0.5 s doubling, at most 16 s."""
    return min(16.0, 0.5 * 2 ** (attempt - 1))


@dataclass(frozen=True)
class RemoteShards:
    """What a reader needs to fetch the shards of one dataset: plain data, pickled to workers."""

    cache_dir: str
    limit_bytes: int
    retries: int
    sha256: tuple[str, ...]  # per shard, aligned with the dataset's urls ('' where the manifest has none)
    nbytes: tuple[int, ...]  # per shard (0 where unknown)


def _filesystem(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        scheme = url.split("://", 1)[0]
        raise DataError(f"data.path: {url}: no client for {scheme}:// is installed ({e}); "
                        f"pip install 'gandist[{_EXTRA.get(scheme, scheme)}]'") from None


def with_retries(url: str, retries: int, what: str, fn: Callable[[], T]) -> T:
    """``fn()``, retried on any failure but a missing object; DataError naming ``url`` at the end."""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_seconds(attempt))
        try:
            return fn()
        except (DataError, FileNotFoundError, PermissionError):
            raise
        except Exception as e:  # noqa: BLE001 - network and server errors come in many types
            last = e
            log.warning("data: %s %s failed (%s: %s)%s", what, url, type(e).__name__, e,
                        f"; retry {attempt + 1} of {retries}" if attempt < retries else "")
    raise DataError(f"data: {what} {url} failed after {retries} retries: {type(last).__name__}: {last} "
                    "(is the server up, and are the credentials in the environment?)")


def read_object(url: str, retries: int) -> bytes:
    """The whole object at ``url`` (a manifest), with retries; DataError naming it when missing."""
    fs, path = _filesystem(url)
    try:
        return with_retries(url, retries, "reading", lambda: fs.cat_file(path))
    except FileNotFoundError:
        raise DataError(f"data.path: {url} does not exist") from None


def missing_objects(urls: list[str], retries: int) -> list[str]:
    """Those of ``urls`` their folder's listing lacks (one listing per folder); [] when the store
    cannot list (some HTTP servers): their absence then shows at the first read."""
    missing: list[str] = []
    by_dir: dict[str, list[str]] = {}
    for u in urls:
        by_dir.setdefault(u.rsplit("/", 1)[0], []).append(u)
    for d, members in by_dir.items():
        fs, path = _filesystem(d)
        try:
            names = {p.rstrip("/").rsplit("/", 1)[-1] for p in with_retries(d, retries, "listing", lambda: fs.ls(path, detail=False))}
        except (DataError, FileNotFoundError, NotImplementedError, PermissionError):
            continue
        missing += [u for u in members if u.rsplit("/", 1)[-1] not in names]
    return missing


class ShardCache:
    """Local copies of a dataset's remote shards (see the module docstring)."""

    def __init__(self, spec: RemoteShards):
        self.spec = spec
        self.root = Path(spec.cache_dir)
        self.hits = self.misses = 0

    def local_path(self, index: int, url: str) -> str:
        """A verified local copy of shard ``index`` (at ``url``), fetched if not cached."""
        sha = self.spec.sha256[index]
        name = url.rstrip("/").rsplit("/", 1)[-1]
        final = self.root / f"{(sha or hashlib.sha256(url.encode()).hexdigest())[:24]}-{name}"
        if not _touch(final):
            self._mkdir()
            with _locked(final.with_name(final.name + ".lock")):
                if not _touch(final):  # (another worker or rank may have fetched it meanwhile)
                    self._fetch(url, final, sha, self.spec.nbytes[index])
                    self.misses += 1
                    return str(final)
        self.hits += 1
        log.debug("data: cache hit %s (%s)", url, final)
        return str(final)

    def _mkdir(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"data.cache_dir: cannot create {self.root}: {e.strerror or e}") from None

    def _fetch(self, url: str, final: Path, sha: str, nbytes: int) -> None:
        fs, path = _filesystem(url)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.part")
        self.make_room(nbytes, keep=final)
        t0 = time.perf_counter()
        for attempt in range(self.spec.retries + 1):
            if attempt:
                time.sleep(backoff_seconds(attempt))
            try:
                size, digest = self._download(fs, path, tmp)
            except OSError as e:  # (FileNotFoundError too: fsspec's HTTP client also says so for a server that is down)
                tmp.unlink(missing_ok=True)
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DataError(
                        f"data.cache_dir: {self.root} is full while fetching {url} ({nbytes / 2**20:.1f} MB); free space "
                        "there, lower data.cache_limit_gb below what the disk holds, or set data.cache_dir elsewhere"
                    ) from None
                why = f"{type(e).__name__}: {e}"
            except Exception as e:  # noqa: BLE001 - network and server errors come in many types
                tmp.unlink(missing_ok=True)
                why = f"{type(e).__name__}: {e}"
            else:
                if (nbytes and size != nbytes) or (sha and digest != sha):
                    tmp.unlink(missing_ok=True)
                    why = (f"{size} bytes, sha256 {digest[:16]}... where the manifest says {nbytes} bytes, "
                           f"sha256 {sha[:16]}... (truncated or altered)")
                else:
                    os.replace(tmp, final)
                    log.info("data: cache miss: fetched %s (%.2f MB in %.2f s) into %s", url, size / 1e6,
                             time.perf_counter() - t0, self.root)
                    return
            last = why
            log.warning("data: fetching %s: %s%s", url, why,
                        f"; retry {attempt + 1} of {self.spec.retries}" if attempt < self.spec.retries else "")
        raise DataError(f"data: shard {url} could not be fetched after {self.spec.retries} retries: {last}")

    @staticmethod
    def _download(fs, path: str, tmp: Path) -> tuple[int, str]:
        h = hashlib.sha256()
        size = 0
        with fs.open(path, "rb") as src, open(tmp, "wb") as dst:
            while True:
                chunk = src.read(_CHUNK_BYTES)
                if not chunk:
                    break
                h.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        return size, h.hexdigest()

    def make_room(self, nbytes: int, keep: Path | None = None) -> None:
        """Evict least recently used shards until ``nbytes`` more fit under the limit."""
        entries = []
        for p in self.root.glob("*.tar"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries, key=lambda e: e[0]):
            if total + nbytes <= self.spec.limit_bytes:
                break
            if p == keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
            log.info("data: cache full (limit %.2f GB): evicted %s", self.spec.limit_bytes / 1e9, p.name)


def _touch(path: Path) -> bool:
    """Mark a cached shard most recently used; False when it is not (or no longer) there."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


@contextmanager
def _locked(path: Path):
    """An exclusive lock between the processes of one machine (loader workers, ranks)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
