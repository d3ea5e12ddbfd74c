"""Distributed evaluation and synthesis: 2 gloo processes give exactly what 1 process gives."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import eval_config, make_classifier, make_digits_shards  # noqa: E402

from gandist.data import resolve_dataset
from gandist.metrics import evaluate_generator
from gandist.engine.process_group import ProcessGroup
from gandist.engine.process_group import rank_slice
from gandist.metrics.evaluate import generate_and_embed
from gandist.metrics.extractors import ClassifierExtractor
from gandist.models import ModelSpec, build_generator
from gandist.classification.synthetic import SynthOptions, generate_labelled

NUM_SAMPLES = 300  # with batch 64: rank 0 embeds 192 (3 batches), rank 1 108: an uneven split


def _generator() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator("dcgan", ModelSpec(16, 1, 10, 16, 16, 16)).eval()


def _evaluate(root: Path, cache: Path, out: Path) -> None:
    train, _ = make_digits_shards(root)
    cfg = eval_config(train, cache, make_classifier(train, root / "clf.safetensors", steps=10))
    group = ProcessGroup()
    G = _generator()
    result = evaluate_generator(G, cfg=cfg, dataset_info=resolve_dataset(cfg.data), engine=group, num_samples=NUM_SAMPLES, step=7,
                                log=lambda s: None)
    extractor = ClassifierExtractor(cfg.metrics.classifier)
    feats, logits, labels = generate_and_embed(G, extractor, group, num_samples=NUM_SAMPLES, z_dim=16, num_classes=10,
                                               batch_size=64, seed=0, extractor_image_size=16)
    images, synth_labels, _ = generate_labelled(G, 10, 16, SynthOptions(per_class=13, batch_size=32), group)
    if group.rank == 0:
        np.savez(out.with_suffix(".npz"), feats=feats, logits=logits, labels=labels, images=images, synth_labels=synth_labels)
        out.write_text(json.dumps({"extractor": result.extractor, "metrics": dict(result), "world_size": group.world_size}))


def _worker(rank: int, port: int, root: str, cache: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        _evaluate(Path(root), Path(cache), Path(out))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rank_slices_cover_items_once_at_batch_boundaries():
    for n, b, w in [(300, 64, 2), (5, 64, 2), (1000, 250, 3), (7, 1, 4)]:
        covered = []
        for r in range(w):
            start, stop, slice_len = rank_slice(n, b, r, w)
            assert (start % b == 0 or start == n) and slice_len % b == 0 and stop - start <= slice_len
            covered += list(range(start, stop))
        assert covered == list(range(n))


@pytest.mark.slow
def test_two_processes_give_the_same_metrics_as_one(tmp_path):
    root = tmp_path / "data"
    make_digits_shards(root)
    make_classifier(root / "train", root / "clf.safetensors", steps=10)
    port = _free_port()
    mp.spawn(_worker, args=(port, str(root), str(tmp_path / "cache2"), str(tmp_path / "two.json")), nprocs=2, join=True)
    _evaluate(root, tmp_path / "cache1", tmp_path / "one.json")

    one, two = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert one["extractor"] == two["extractor"] and one["extractor"].startswith("classifier-resnet8-")
    assert set(one["metrics"]) == set(two["metrics"]) >= {"fid", "kid", "kid_std", "precision", "recall", "is", "class_accuracy", "fid_class_9"}
    for key, value in one["metrics"].items():
        assert two["metrics"][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    # Gathered rows come back in sample order, not only as the same set.
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_allclose(a["feats"], b["feats"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(a["images"], b["images"])
    np.testing.assert_array_equal(a["synth_labels"], np.repeat(np.arange(10), 13))
    # Real features were embedded by both ranks and cached once per extractor and dataset.
    assert len(list((tmp_path / "cache2").glob("real-*.npz"))) == 1
