"""Find a dataset: ``data.path`` (directory, brace/glob pattern, ``pipe:`` URLs) or the built-in
one, checked up front so a bad path fails at start with the path in the message."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from webdataset.shardlists import expand_urls

from gandist.config import DataConfig
from gandist.data.builtin import default_cache_dir, ensure_builtin
from gandist.data.manifest import MANIFEST_NAME, dataset_channels, dataset_image_size, read_manifest
from gandist.data.reader import missing_shards
from gandist.data.remote import RemoteShards, ShardCache, is_object_url, missing_objects, read_object
from gandist.errors import DataError
from gandist.fileio import atomic_write_bytes


@dataclass
class DatasetInfo:
    urls: list[str]
    """Resolved shard paths or URLs, sorted."""
    num_samples: int
    """Images in these shards (from the manifest)."""
    num_classes: int
    """0 when unlabelled."""
    class_names: list[str]
    image_size: int
    """Side of the square images the loader yields by default (see ``manifest.dataset_image_size``)."""
    channels: int
    """1 or 3."""
    manifest_path: str | None
    manifest_sha256: str
    """sha256 of manifest.json: a key for caches of dataset statistics (FID reference features)."""
    shard_counts: list[int] = field(default_factory=list)
    """Samples per shard, aligned with ``urls``."""
    sample_format: str = "png"
    """png, jpg, npy, original or blocks."""
    block_size: int = 0
    """Images per block (blocks format), else 0."""
    remote: RemoteShards | None = None
    """How to fetch and cache the shards when they are in an object store (``s3://``, ...)."""

    def shard_path(self, i: int) -> str:
        """Where shard ``i`` is read from: its path or URL, or a verified local copy of a remote one."""
        if self.remote is None:
            return self.urls[i]
        if getattr(self, "_cache", None) is None:
            self._cache = ShardCache(self.remote)
        return self._cache.local_path(i, self.urls[i])


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or "://" in url


def _expand_pattern(path: str) -> list[str]:
    """``path``'s brace pattern expanded (webdataset's rule); DataError naming it when the braces
    do not balance (``braceexpand`` raises a ValueError of its own, which is no message for a user)."""
    try:
        return expand_urls(path)
    except ValueError as e:
        raise DataError(f"data.path: {path!r:.300} is not a valid shard pattern ({e}); "
                        "write ranges as shard-{000000..000009}.tar") from None


def resolve_dataset(data_cfg: DataConfig) -> DatasetInfo:
    """``data.path`` (or the built-in dataset when empty) -> :class:`DatasetInfo`.

    Raises DataError naming the path for: a missing directory, a directory without shards or
    without ``manifest.json``, a pattern matching nothing, and missing shard files (all listed).
    """
    path = data_cfg.path.strip()
    manifest_override = data_cfg.manifest
    if not path:
        root = ensure_builtin(data_cfg.builtin, data_cfg.cache_dir, "all")
        return info_from_dir(root)
    if is_object_url(path):
        return _object_store_info(path, data_cfg)
    if _is_remote(path) or any(ch in path for ch in "{*?["):
        if _is_remote(path):
            urls = _expand_pattern(path)
        else:
            urls = []
            for u in _expand_pattern(path):
                urls.extend(sorted(glob.glob(u)) if any(ch in u for ch in "*?[") else [u])
            if not urls:
                raise DataError(f"data.path: pattern {path!r} matches no files")
        if manifest_override:
            mpath = Path(manifest_override)
        elif not _is_remote(urls[0]):
            mpath = Path(urls[0]).parent / MANIFEST_NAME
        else:
            raise DataError(
                f"data.path: {path!r} names remote shards; set data.manifest to a local copy of their "
                "manifest.json (sample counts per shard are needed to split epochs exactly)"
            )
        return _info(sorted(urls), mpath, where=f"data.path {path!r}")
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".tar":
        return _info([str(p)], Path(manifest_override) if manifest_override else p.parent / MANIFEST_NAME, where=f"data.path {path!r}")
    if not p.exists():
        raise DataError(f"data.path: directory not found: {p}")
    if not p.is_dir():
        raise DataError(f"data.path: {p} is neither a shard directory, a .tar file nor a pattern")
    return info_from_dir(p, Path(manifest_override) if manifest_override else None)


def _object_store_info(path: str, data_cfg: DataConfig) -> DatasetInfo:
    """Shards in an object store: a folder (its ``manifest.json`` lists them) or shard URLs (a
    brace pattern, ``.tar``), with ``data.manifest`` or the manifest beside them. The manifest is
    read once into the cache (the sample counts and digests come from it)."""
    retries = data_cfg.remote_retries
    if path.endswith(".tar") or "{" in path:
        urls = _expand_pattern(path)
        manifest_url = data_cfg.manifest or urls[0].rsplit("/", 1)[0] + "/" + MANIFEST_NAME
    else:
        urls = None
        manifest_url = data_cfg.manifest or path.rstrip("/") + "/" + MANIFEST_NAME
    cache = default_cache_dir(data_cfg.cache_dir)
    if is_object_url(manifest_url):
        text = read_object(manifest_url, retries)
        mpath = cache / "manifests" / (hashlib.sha256(manifest_url.encode()).hexdigest()[:24] + ".json")
        try:
            mpath.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(mpath, text)
        except OSError as e:
            raise DataError(f"data.cache_dir: cannot write {mpath}: {e.strerror or e}") from None
    else:
        mpath = Path(manifest_url)
    m = read_manifest(mpath) if mpath.is_file() else None
    if m is None:
        raise DataError(f"data.manifest: no {MANIFEST_NAME} at {mpath}")
    if urls is None:
        urls = [path.rstrip("/") + "/" + s["name"] for s in m["shards"]]
    missing = missing_objects(urls, retries)
    if missing:
        raise DataError(f"data.path {path!r}: {len(missing)} shard(s) missing: {', '.join(missing[:20])}")
    info = _info(sorted(urls), mpath, where=f"data.path {path!r}", manifest=m)
    by_name = {s["name"]: s for s in m["shards"]}
    info.remote = RemoteShards(
        cache_dir=str(cache / "shards"), limit_bytes=int(data_cfg.cache_limit_gb * 1e9), retries=retries,
        sha256=tuple(by_name[shard_name(u)].get("sha256", "") for u in info.urls),
        nbytes=tuple(int(by_name[shard_name(u)].get("num_bytes", 0)) for u in info.urls),
    )
    return info


def info_from_dir(root: str | os.PathLike, manifest_path: Path | None = None) -> DatasetInfo:
    root = Path(root)
    mpath = manifest_path or root / MANIFEST_NAME
    if not mpath.is_file():
        tars = sorted(root.glob("*.tar"))
        if not tars:
            raise DataError(f"data.path: no shards (*.tar) and no {MANIFEST_NAME} in {root}; make some with `gandist shards make --out {root}`")
        raise DataError(
            f"data.path: {root} has {len(tars)} shard(s) but no {MANIFEST_NAME}; gandist needs the sample counts "
            "it records (re-create the shards with `gandist shards make`, or set data.manifest)"
        )
    m = read_manifest(mpath)
    if not m["shards"]:
        raise DataError(f"data.path: no shards listed in {mpath}")
    urls = [str(root / s["name"]) for s in m["shards"]]
    return _info(sorted(urls), mpath, where=f"data.path {str(root)!r}", manifest=m)


def _info(urls: list[str], mpath: Path, where: str, manifest: dict | None = None) -> DatasetInfo:
    if not mpath.is_file():
        raise DataError(f"{where}: no {MANIFEST_NAME} at {mpath} (set data.manifest to its path)")
    m = manifest or read_manifest(mpath)
    counts_by_name = {s["name"]: int(s["num_samples"]) for s in m["shards"]}
    missing = missing_shards(urls)
    if missing:
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing)} in all)" if len(missing) > 20 else "")
        raise DataError(f"{where}: {len(missing)} shard file(s) missing: {shown}")
    counts = []
    for u in urls:
        name = shard_name(u)
        if name not in counts_by_name:
            raise DataError(f"{where}: shard {u} is not listed in {mpath}")
        counts.append(counts_by_name[name])
    return DatasetInfo(
        urls=urls,
        num_samples=sum(counts),
        num_classes=int(m.get("num_classes", 0)),
        class_names=list(m.get("class_names", [])),
        image_size=dataset_image_size(m),
        channels=dataset_channels(m),
        manifest_path=str(mpath),
        manifest_sha256=hashlib.sha256(mpath.read_bytes()).hexdigest(),
        shard_counts=counts,
        sample_format=m.get("sample_format", "png"),
        block_size=int(m.get("block_size", 0)),
    )


def shard_name(url: str) -> str:
    """File name of a shard: ``d/000001.tar`` and ``pipe:aws s3 cp s3://b/000001.tar -`` -> ``000001.tar``."""
    if not _is_remote(url):
        return os.path.basename(url)
    names = re.findall(r"[^\s/:]+\.tar\b", url)
    return names[-1] if names else url


def read_all(source: "DatasetInfo | str | os.PathLike", *, image_size: int = 0, channels: int = 0,
             jpeg_decoder: str = "pil") -> tuple[np.ndarray, np.ndarray]:
    """Every image and label of a (small) dataset in shard order: (images uint8 N x C x H x W,
    labels int64 N, -1 when unlabelled). Images are converted to ``image_size``/``channels``
    (0: the dataset's own), decoded as the streaming loader decodes them (``jpeg_decoder``: a
    resolved ``data.jpeg_decoder``). Raises DataError naming shard and key on any unreadable sample."""
    from gandist.data import images as im
    from gandist.data.reader import check_block_labels, decode_sample, iter_blocks, iter_samples

    info = source if isinstance(source, DatasetInfo) else resolve_dataset(DataConfig(path=str(source)))
    size = image_size or info.image_size
    ch = channels or info.channels
    out_imgs, out_labels = [], []
    for i, count in enumerate(info.shard_counts):
        url = info.shard_path(i)
        if info.sample_format == "blocks":
            for b in iter_blocks(url, 0, count, info.block_size, count):
                err = b.error or check_block_labels(b, info.num_classes)
                if err:
                    raise DataError(f"shard {url}: {err}")
                out_imgs.append(im.convert_batch(b.imgs, size, ch))
                out_labels.append(b.labels if b.labels is not None else np.full(b.n, -1, np.int64))
        else:
            for s in iter_samples(url, 0, count, count):
                try:
                    a, label = decode_sample(s, info.num_classes, size, jpeg_decoder)
                except ValueError as e:
                    raise DataError(f"shard {url}: sample {s.key}: {e}") from None
                out_imgs.append(im.convert(a, size, ch)[None])
                out_labels.append(np.array([label], np.int64))
    imgs = np.concatenate(out_imgs) if out_imgs else np.zeros((0, size, size, ch), np.uint8)
    labels = np.concatenate(out_labels) if out_labels else np.zeros((0,), np.int64)
    return np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)), labels
