"""The labelled subset of a semi-supervised run: which samples' labels D may learn from.

Chosen once, class-stratified and seeded, from the samples of the training shards that carry a
label (all of them for fully labelled shards; the rest count as unlabelled), and written to
``RUN_DIR/labelled.json`` by rank zero before the other ranks read it. Every rank, every resume
and every later report (``gandist eval``, ``gandist classify --semisup-run``) reads that file,
so they all use the same subset.

With ``data.labelled_fraction`` the subset is exactly the one ``gandist classify --protocol
lowdata`` draws for the same fraction and seed (``stratified_subset`` in the shards' order):
the semi-supervised D and the real-only baselines of a study learn from the same labels.

``labelled.json``::

    {"format": "gandist-labelled-v1",
     "rule": {"labelled_fraction": 0.05, "labelled_per_class": 0, "seed": 0},
     "dataset": {"manifest_sha256": ..., "num_samples": 1438, "num_labelled_in_shards": 1438},
     "class_names": [...], "num_per_class": [7, 8, ...],
     "samples": [{"shard": "000003.tar", "key": "000123", "label": 4}, ...]}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gandist.data import shard_name
from gandist.errors import ConfigError, DataError

LABELLED_FILE = "labelled.json"
FORMAT = "gandist-labelled-v1"


@dataclass
class LabelledSet:
    """The chosen labelled samples in memory: uint8 images N x C x H x W and int64 labels N."""

    images: np.ndarray
    labels: np.ndarray
    record: dict[str, Any]
    """The content of ``labelled.json``."""

    def __len__(self) -> int:
        return len(self.labels)


# Reading keys and labels -------------------------------------------------------------------------


def scan_labels(info) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(shard name, sample key) and label (-1: none) of every sample of ``info`` (a
    ``gandist.data.DatasetInfo``), in the order the shards list them; images are not decoded.
    Block shards name their images ``<block key>#<index in block>``."""
    from gandist.data.reader import iter_blocks, iter_samples

    ids: list[tuple[str, str]] = []
    labels: list[int] = []
    for i, (url, count) in enumerate(zip(info.urls, info.shard_counts)):
        name = shard_name(url)
        url = info.shard_path(i)  # (a local copy when the shards are remote)
        if info.sample_format == "blocks":
            for b in iter_blocks(url, 0, count, info.block_size, count):  # whole blocks: the range is the shard
                for j in range(b.n):
                    ids.append((name, f"{b.key}#{j}"))
                    ok = not b.error and b.labels is not None and 0 <= int(b.labels[j]) < max(info.num_classes, 1)
                    labels.append(int(b.labels[j]) if ok else -1)
        else:
            for s in iter_samples(url, 0, count):
                ids.append((name, s.key))
                labels.append(_sample_label(s, info.num_classes))
    return ids, np.asarray(labels, dtype=np.int64)


def _sample_label(s, num_classes: int) -> int:
    """The ``.cls`` label of a raw sample, or -1 when it has none (an unlabelled sample)."""
    if s.members is None or "cls" not in s.members or not num_classes:
        return -1
    try:
        label = int(s.members["cls"].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return -1
    return label if 0 <= label < num_classes else -1


# Choosing the subset -----------------------------------------------------------------------------


def choose(labels: np.ndarray, *, fraction: float, per_class: int, seed: int) -> np.ndarray:
    """Indices (sorted) of the labelled subset among ``labels`` (-1: unlabelled, never chosen).

    ``per_class`` > 0: that many samples of each class (all of a class that has fewer);
    otherwise ``fraction`` of each class, at least one (``stratified_subset`` of ``gandist
    classify``, with the generator of its low-data protocol for this seed).
    """
    from gandist.classification.protocols import lowdata_rng, stratified_subset

    candidates = np.flatnonzero(labels >= 0)
    if not len(candidates):
        return candidates
    rng = lowdata_rng(seed)
    if per_class:
        picked = []
        for c in np.unique(labels[candidates]):
            idx = candidates[labels[candidates] == c]
            picked.append(rng.choice(idx, min(per_class, len(idx)), replace=False))
        return np.sort(np.concatenate(picked))
    return candidates[stratified_subset(labels[candidates], fraction, rng)]


def rule_of(cfg) -> dict[str, Any]:
    return {"labelled_fraction": cfg.data.labelled_fraction, "labelled_per_class": cfg.data.labelled_per_class,
            "seed": cfg.train.seed}


def make_record(info, cfg) -> dict[str, Any]:
    """The content of ``labelled.json`` for the config ``cfg`` on the dataset ``info``."""
    ids, labels = scan_labels(info)
    chosen = choose(labels, fraction=cfg.data.labelled_fraction, per_class=cfg.data.labelled_per_class, seed=cfg.train.seed)
    if not len(chosen):
        raise DataError(
            f"train.objective=semisup: no sample of {info.manifest_path or cfg.data.path} carries a class label "
            "(write labelled samples with gandist shards make --labels ..., or label some of them)"
        )
    counts = np.bincount(labels[chosen], minlength=info.num_classes)
    return {
        "format": FORMAT,
        "rule": rule_of(cfg),
        "dataset": {"manifest_sha256": info.manifest_sha256, "num_samples": int(len(labels)),
                    "num_labelled_in_shards": int((labels >= 0).sum())},
        "class_names": list(info.class_names),
        "num_per_class": [int(n) for n in counts],
        "samples": [{"shard": ids[i][0], "key": ids[i][1], "label": int(labels[i])} for i in chosen],
    }


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the labelled subset: {e}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("samples"), list):
        raise DataError(f"{path}: not a gandist labelled-subset file (format {FORMAT})")
    return record


def ensure_record(run_dir: Path, info, cfg, group, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``RUN_DIR/labelled.json``, written by rank zero on the first start and read by every rank.
    A resumed run reuses the file; a config whose labelled-subset rule differs from it is an error."""
    from gandist.fileio import atomic_write_text

    path = Path(run_dir) / LABELLED_FILE
    with group.main_first():  # rank zero writes the file; the others then read it
        if not path.is_file():
            record = make_record(info, cfg)
            atomic_write_text(path, json.dumps(record, indent=1) + "\n")
            log(f"semisup: chose {len(record['samples'])} labelled samples of {record['dataset']['num_labelled_in_shards']} "
                f"labelled in the shards ({record['num_per_class']} per class); recorded in {path}")
    record = read_record(path)
    if record["rule"] != rule_of(cfg):
        changed = [f"data.{k}" if k != "seed" else "train.seed" for k in rule_of(cfg) if record["rule"].get(k) != rule_of(cfg)[k]]
        raise ConfigError(
            f"{', '.join(changed)}: {path} holds the labelled subset of {record['rule']}, this config asks for {rule_of(cfg)}; "
            "a run keeps its labelled subset (start a new run directory to change it)"
        )
    if record["dataset"]["manifest_sha256"] != info.manifest_sha256:
        raise DataError(f"data.path: the shards' manifest differs from the one {path} was chosen from; start a new run directory")
    return record


# Loading the chosen images ---------------------------------------------------------------------


def load_images(info, record: dict[str, Any], *, image_size: int, channels: int) -> LabelledSet:
    """The images of the samples ``record`` lists, in its order, at ``image_size``/``channels``.
    Reads only the shards that hold some of them."""
    from gandist.data import images as im
    from gandist.data.reader import decode_sample, iter_blocks, iter_samples

    size, ch = image_size or info.image_size, channels or info.channels
    wanted: dict[tuple[str, str], int] = {(s["shard"], s["key"]): i for i, s in enumerate(record["samples"])}
    shards = {name for name, _ in wanted}
    out: list[np.ndarray | None] = [None] * len(wanted)
    for i, (url, count) in enumerate(zip(info.urls, info.shard_counts)):
        name = shard_name(url)
        url = info.shard_path(i)  # (a local copy when the shards are remote)
        if name not in shards:
            continue
        if info.sample_format == "blocks":
            for b in iter_blocks(url, 0, count, info.block_size, count):
                for j in range(b.n):
                    i = wanted.get((name, f"{b.key}#{j}"))
                    if i is not None and b.imgs is not None:
                        out[i] = im.convert(b.imgs[j], size, ch)
        else:
            for s in iter_samples(url, 0, count):
                i = wanted.get((name, s.key))
                if i is None:
                    continue
                try:
                    a, _ = decode_sample(s, 0)
                    out[i] = im.convert(a, size, ch)
                except ValueError as e:
                    raise DataError(f"shard {url}: labelled sample {s.key}: {e}") from None
    missing = [s for s, a in zip(record["samples"], out) if a is None]
    if missing:
        m = missing[0]
        raise DataError(f"labelled subset: {len(missing)} listed sample(s) not found in the shards, first {m['shard']}/{m['key']}")
    imgs = np.stack(out).transpose(0, 3, 1, 2) if out else np.zeros((0, ch, size, size), np.uint8)
    labels = np.asarray([s["label"] for s in record["samples"]], dtype=np.int64)
    return LabelledSet(np.ascontiguousarray(imgs), labels, record)


def prepare_labelled(run_dir: str | os.PathLike, info, cfg, group, *, image_size: int, channels: int,
                     log: Callable[[str], None] = print) -> LabelledSet:
    """The labelled set of a run: ``labelled.json`` ensured (see ``ensure_record``), images loaded."""
    record = ensure_record(Path(run_dir), info, cfg, group, log=log)
    return load_images(info, record, image_size=image_size, channels=channels)
