"""``shards merge``: combine several shard directories (usually the slices of ``shards make
--slice I/N``, one per job-array task) into one ordinary shard directory.

The parts' shards are hard-linked into ``out`` as ``000000.tar, 000001.tar, ...`` in part order
(slice order when the parts are slices), falling back to a copy where a link is impossible
(another filesystem). Links cost no space and leave every part intact, so nothing is ever
deleted from a part and a part stays a valid shard set of its own.

Safe to interrupt and to run again:

1. ``out/.merge.json`` first records every shard name this merge may create, so a re-run knows
   those files are its own (a ``.tar`` in ``out`` that is neither listed there nor in an earlier
   merged manifest is never overwritten: the merge refuses instead).
2. Each shard is linked/copied to a temporary name and renamed into place; one already in place
   (same file, or same size and sha256) is kept.
3. ``manifest.json`` is written last (tmp + fsync + rename): until then readers see the previous
   state. Only after it is committed are shards of an earlier merge that the new manifest no
   longer lists removed, and the ``.merge.json`` marker.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gandist.data.manifest import FORMAT, MANIFEST_NAME, read_manifest, write_manifest
from gandist.data.writer import PROGRESS_NAME
from gandist.errors import DataError
from gandist.fileio import atomic_write_text, sha256_file

MARKER_NAME = ".merge.json"
# Manifest fields that only describe one part; everything else a single `shards make` records
# (source, seed, split, builtin, ...) is the same in every slice and is kept.
_PER_PART_FIELDS = {
    "format", "sample_format", "num_samples", "num_classes", "class_names", "class_counts", "image",
    "num_unreadable_skipped", "shards", "command", "created", "writer", "block_size", "slice", "merged_from",
}


@dataclass
class _Part:
    path: Path
    manifest: dict[str, Any]

    @property
    def slice(self) -> dict[str, Any] | None:
        return self.manifest.get("slice")


@dataclass
class MergeResult:
    manifest: dict[str, Any]
    num_linked: int = 0
    num_copied: int = 0
    num_in_place: int = 0
    """Shards that an earlier (possibly interrupted) run of the same merge had already placed."""


def merge_parts(out_dir: str | os.PathLike, part_dirs: list[str | os.PathLike], *, command: str = "") -> MergeResult:
    """Merge ``part_dirs`` into ``out_dir`` (see the module docstring) and return the manifest
    with what was linked, copied or already there. Raises DataError naming the part and field
    when parts disagree (classes, format, block size; for slices, the options they were made
    with; for other parts, a uniform image shape), when a part is incomplete, and when slices
    are missing or repeated."""
    out = Path(out_dir)
    if not part_dirs:
        raise DataError("shards merge: give at least one PART_DIR")
    parts = _order(_load_part(Path(p), out) for p in part_dirs)
    _check_compatible(parts)

    plan: list[tuple[Path, dict[str, Any], str]] = []  # (source shard, its manifest entry, name in out)
    for part in parts:
        for entry in part.manifest["shards"]:
            plan.append((part.path / entry["name"], entry, f"{len(plan):06d}.tar"))
    new_names = {name for _, _, name in plan}

    out.mkdir(parents=True, exist_ok=True)
    old_manifest, ours = _claim(out, plan)
    _write_json_atomic(out / MARKER_NAME, {"names": sorted(ours | new_names)})

    result = MergeResult(manifest={})
    for src, entry, name in plan:
        how = _place(src, out / name, entry)
        setattr(result, f"num_{how}", getattr(result, f"num_{how}") + 1)

    manifest = _merged_manifest(parts, plan, out, command)
    if old_manifest is not None and _same_except_created(old_manifest, manifest):
        manifest = old_manifest  # nothing changed: keep the file (its sha256 keys caches of statistics)
    else:
        write_manifest(out, manifest)
    for name in sorted(ours - new_names):  # an earlier merge's shards the new manifest does not list
        (out / name).unlink(missing_ok=True)
    (out / MARKER_NAME).unlink(missing_ok=True)
    result.manifest = manifest
    return result


def _load_part(path: Path, out: Path) -> _Part:
    if not path.is_dir():
        raise DataError(f"part {path}: not a directory")
    if path.resolve() == out.resolve():
        raise DataError(f"part {path}: is the --out directory itself; merge parts into a new directory")
    mpath = path / MANIFEST_NAME
    if (path / PROGRESS_NAME).exists() or not mpath.exists():
        if (path / PROGRESS_NAME).exists():
            raise DataError(f"part {path}: incomplete ({PROGRESS_NAME} present: its `shards make` is still running or "
                            "was interrupted; run it again with the same arguments to finish it)")
        raise DataError(f"part {path}: no {MANIFEST_NAME} (not a finished shard directory)")
    m = read_manifest(mpath)
    if not m["shards"]:
        raise DataError(f"part {path}: its {MANIFEST_NAME} lists no shards")
    for entry in m["shards"]:
        f = path / entry["name"]
        if not f.is_file():
            raise DataError(f"part {path}: shard {entry['name']} is missing")
        if "num_bytes" in entry and f.stat().st_size != entry["num_bytes"]:
            raise DataError(f"part {path}: shard {entry['name']} has {f.stat().st_size} bytes, its manifest says "
                            f"{entry['num_bytes']} (run `gandist shards verify {path}`)")
    return _Part(path, m)


def _order(parts_iter) -> list[_Part]:
    """Slices in slice order, checked to be exactly 0..N-1 of one N; other parts as given."""
    parts = list(parts_iter)
    sliced = [p for p in parts if p.slice is not None]
    if not sliced:
        return parts
    if len(sliced) != len(parts):
        plain = next(p for p in parts if p.slice is None)
        raise DataError(f"part {plain.path} was not made with --slice but part {sliced[0].path} was "
                        f"(slice {_label(sliced[0])}); merge the slices of one `shards make` only")
    count = sliced[0].slice["count"]
    by_index: dict[int, _Part] = {}
    for p in sliced:
        if p.slice["count"] != count:
            raise DataError(f"part {p.path}: field slice: {_label(p)}, but part {sliced[0].path} is {_label(sliced[0])} "
                            "(slices of different --slice counts)")
        if p.slice["index"] in by_index:
            raise DataError(f"part {p.path}: slice {_label(p)} is also part {by_index[p.slice['index']].path}")
        by_index[p.slice["index"]] = p
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        shown = ", ".join(f"{i}/{count}" for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise DataError(f"shards merge: slice(s) {shown} missing: give all {count} parts (found {len(by_index)})")
    return [by_index[i] for i in range(count)]


def _label(p: _Part) -> str:
    return f"{p.slice['index']}/{p.slice['count']}"


def _check_compatible(parts: list[_Part]) -> None:
    first = parts[0]
    for p in parts[1:]:
        for field in ("format", "sample_format", "class_names", "block_size"):
            a, b = first.manifest.get(field), p.manifest.get(field)
            if a != b:
                raise DataError(f"part {p.path}: field {field} is {_short(b)} but part {first.path} has {_short(a)}; "
                                "parts must agree to be merged")
        if first.slice is not None:
            # Slices of one command differ only in which slice they are: anything else (seed,
            # source, resize, ...) would make the union something no single make writes. Their
            # image shapes may differ (an unresized folder of mixed sizes), as one make's would.
            fa, fb = _flat(_without_slice(first.manifest.get("writer", {}))), _flat(_without_slice(p.manifest.get("writer", {})))
            for key in sorted(set(fa) | set(fb)):
                if fa.get(key) != fb.get(key):
                    raise DataError(f"part {p.path}: made with {key}={_short(fb.get(key))} but part {first.path} with "
                                    f"{_short(fa.get(key))}; the slices must come from one `shards make` command")
            continue
        ia, ib = first.manifest.get("image", {}), p.manifest.get("image", {})
        if ia.get("uniform") and ib.get("uniform") and _shape(ia) != _shape(ib):
            raise DataError(f"part {p.path}: field image is {_shape(ib)} (HxWxC) but part {first.path} has {_shape(ia)}; "
                            "parts must hold images of one shape and channel count (remake one with --resize/--channels)")


def _shape(image: dict[str, Any]) -> str:
    return f"{image.get('height')}x{image.get('width')}x{image.get('channels')}"


def _short(v: Any) -> str:
    text = json.dumps(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _without_slice(writer: dict[str, Any]) -> dict[str, Any]:
    return {**writer, "extra": {k: v for k, v in writer.get("extra", {}).items() if k != "slice"}}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _claim(out: Path, plan: list[tuple[Path, dict[str, Any], str]]) -> tuple[dict[str, Any] | None, set[str]]:
    """The earlier merged manifest (if any) and the shard names in ``out`` an earlier merge made.
    Refuses a directory holding a `shards make` result, or a foreign file where a shard goes."""
    old = None
    mpath = out / MANIFEST_NAME
    if mpath.exists():
        old = read_manifest(mpath)
        if "merged_from" not in old:
            raise DataError(f"--out {out}: holds a shard set written by `shards make` ({mpath}); merge into another directory")
    ours = {s["name"] for s in old["shards"]} if old else set()
    if (out / MARKER_NAME).exists():
        ours |= set(json.loads((out / MARKER_NAME).read_text()).get("names", []))
    for src, entry, name in plan:
        dst = out / name
        if dst.exists() and name not in ours and not _is_placed(src, dst, entry):
            raise DataError(f"--out {out}: {name} exists and was not written by `shards merge`; "
                            "merge into another directory (or move that file away)")
    return old, ours


def _is_placed(src: Path, dst: Path, entry: dict[str, Any]) -> bool:
    if not dst.is_file():
        return False
    if os.path.samefile(src, dst):
        return True
    return dst.stat().st_size == src.stat().st_size and sha256_file(dst) == entry["sha256"]


def _place(src: Path, dst: Path, entry: dict[str, Any]) -> str:
    """Put ``src`` at ``dst`` (hard link, else copy) atomically; returns linked/copied/in_place."""
    if _is_placed(src, dst, entry):
        return "in_place"
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        how = "linked"
    except OSError:  # another filesystem, or links not supported
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        how = "copied"
    os.replace(tmp, dst)
    return how


def _merged_manifest(parts: list[_Part], plan, out: Path, command: str) -> dict[str, Any]:
    first = parts[0].manifest
    class_names = list(first.get("class_names", []))
    class_counts = [0] * len(class_names)
    for p in parts:
        for i, n in enumerate(p.manifest.get("class_counts") or []):
            class_counts[i] += n
    shards = []
    for src, entry, name in plan:
        shards.append({"name": name, **{k: entry[k] for k in ("num_samples", "sha256", "num_bytes", "class_counts") if k in entry},
                       "from": _rel(src, out)})
    m: dict[str, Any] = {
        "format": first.get("format", FORMAT),
        "sample_format": first.get("sample_format", "png"),
        "num_samples": sum(int(p.manifest["num_samples"]) for p in parts),
        "num_classes": len(class_names),
        "class_names": class_names,
        "class_counts": class_counts if class_names else [],
        "image": merge_image_stats([p.manifest.get("image", {}) for p in parts]),
        "num_unreadable_skipped": sum(int(p.manifest.get("num_unreadable_skipped", 0)) for p in parts),
        "shards": shards,
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "merged_from": [
            {"path": _rel(p.path, out), "slice": _label(p) if p.slice else None, "num_samples": p.manifest["num_samples"],
             "num_shards": len(p.manifest["shards"]), "command": p.manifest.get("command", "")}
            for p in parts
        ],
    }
    if "block_size" in first:
        m["block_size"] = first["block_size"]
    if parts[0].slice is not None:  # what the slices' command recorded about its input (source, seed, ...)
        m.update({k: v for k, v in first.items() if k not in _PER_PART_FIELDS})
    return m


def merge_image_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Image statistics (``manifest.image_stats`` layout) of the union of several shard sets."""
    stats = [s for s in stats if s.get("height") or s.get("max_height")]
    if not stats:
        return {"height": 0, "width": 0, "channels": 0, "uniform": True}
    if all(s.get("uniform") for s in stats) and len({_shape(s) for s in stats}) == 1:
        merged = dict(stats[0])
        merged["channel_counts"] = _sum_counts(stats)
        return merged
    chans = _sum_counts(stats)
    lo_h = min(s.get("min_height", s["height"]) for s in stats)
    lo_w = min(s.get("min_width", s["width"]) for s in stats)
    return {
        "height": lo_h,
        "width": lo_w,
        "channels": int(max(chans, key=lambda k: chans[k])) if chans else stats[0].get("channels", 0),
        "uniform": False,
        "min_height": lo_h,
        "max_height": max(s.get("max_height", s["height"]) for s in stats),
        "min_width": lo_w,
        "max_width": max(s.get("max_width", s["width"]) for s in stats),
        "channel_counts": chans,
    }


def _sum_counts(stats: list[dict[str, Any]]) -> dict[str, int]:
    chans: dict[str, int] = {}
    for s in stats:
        for c, n in (s.get("channel_counts") or {}).items():
            chans[c] = chans.get(c, 0) + int(n)
    return chans


def _rel(path: Path, out: Path) -> str:
    """``path`` relative to ``out`` when inside it (a merged directory that moves keeps its record)."""
    try:
        return str(path.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path.resolve())


def _same_except_created(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k != "created"} == {k: v for k, v in b.items() if k != "created"}


def _write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj) + "\n")
