"""data.device_cache: the dataset held on the training device gives the streaming path's batches,
batch for batch (order, coverage, augmentation), and the same resumable position."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gandist.config import DataConfig, load_config
from gandist.data import build_stream, resolve_dataset
from gandist.data.device_cache import DeviceCachedStream
from gandist.errors import ConfigError, DataError

from data_helpers import index_of, write_uneven
from test_train import assert_states_equal

COUNTS = [10, 3, 17, 6, 1, 9, 2]  # 48 samples in 7 uneven shards


@pytest.fixture(scope="module", params=["png", "blocks"])
def uneven(tmp_path_factory, request) -> Path:
    return write_uneven(tmp_path_factory.mktemp(f"uneven_{request.param}"), COUNTS, fmt=request.param, block_size=4)


def _make(root: Path, cache: bool, *, rank: int = 1, world: int = 2, batch: int = 4, mode: str = "epoch", workers: int = 0,
          **aug):
    cfg = DataConfig(path=str(root), mode=mode, num_workers=workers, shuffle_buffer=6, device_cache=cache, **aug)
    return build_stream(cfg, resolve_dataset(cfg), batch_size_per_rank=batch, rank=rank, world_size=world, seed=9,
                        image_size=0, channels=0)


def _take(stream, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    it = iter(stream)
    out = [tuple(t.cpu() for t in next(it)) for _ in range(n)]
    stream.close()
    return out


# The cache emulates the streaming workers' round-robin (no processes); the reference spawns them.
@pytest.mark.parametrize("mode,workers", [("epoch", 0), ("epoch", 3), ("resampled", 2)])
def test_same_batches_as_streaming(uneven, mode, workers):
    aug = dict(random_flip=True, random_crop_pad=2)
    cached = _make(uneven, True, mode=mode, workers=workers, **aug)
    assert isinstance(cached, DeviceCachedStream) and cached.images.shape == (48, 1, 8, 8)
    # 6 batches per rank per epoch: 17 batches cross two epoch boundaries.
    got = _take(cached, 17)
    ref = _take(_make(uneven, False, mode=mode, workers=workers, **aug), 17)
    for j, ((x, y), (rx, ry)) in enumerate(zip(got, ref)):
        assert torch.equal(x, rx) and torch.equal(y, ry) and x.stride() == rx.stride(), f"batch {j}"


def test_every_sample_once_per_epoch_across_ranks(uneven):
    keys = {0: [], 1: []}
    for epoch in range(2):
        for rank in (0, 1):
            batches = _take(_make(uneven, True, rank=rank), 12)[6 * epoch: 6 * epoch + 6]
            keys[epoch] += [index_of(img) for x, _ in batches for img in x.numpy()]
    assert sorted(keys[0]) == list(range(48)) and sorted(keys[1]) == list(range(48))
    assert keys[0] != keys[1]  # reshuffled each epoch


def test_resume_exact_and_interchangeable_with_streaming(uneven):
    aug = dict(random_flip=True)
    ref = _take(_make(uneven, True, workers=2, **aug), 15)
    for cut, saver_cached in ((5, True), (6, False), (9, True)):
        saver = _make(uneven, saver_cached, workers=2, **aug)
        it = iter(saver)
        for _ in range(cut):
            next(it)
        state = saver.state_dict()
        saver.close()
        resumed = _make(uneven, True, workers=2, **aug)
        resumed.load_state_dict(state)
        for j, (x, y) in enumerate(_take(resumed, 15 - cut), start=cut):
            assert torch.equal(x.cpu(), ref[j][0]) and torch.equal(y.cpu(), ref[j][1]), f"cut {cut}, batch {j}"


def test_continue_from_another_world_size_as_streaming_does(uneven):
    one = _make(uneven, True, rank=0, world=1, batch=8)  # 6 batches per epoch
    it = iter(one)
    next(it), next(it)
    state = one.state_dict()
    one.close()
    for rank in (0, 1):
        got, ref = _make(uneven, True, rank=rank, world=2, batch=4), _make(uneven, False, rank=rank, world=2, batch=4)
        got.continue_from(state)
        ref.continue_from(state)
        # The rest of epoch 0 (the 32 samples rank 0's two batches left): 4 steps of 2 x 4, then epoch 1.
        assert (got.epoch, got.batches_in_epoch) == (ref.epoch, ref.batches_in_epoch) == (0, 0)
        assert got.plan.batches_per_rank(0) == ref.plan.batches_per_rank(0) == 4
        for (x, y), (rx, ry) in zip(_take(got, 6), _take(ref, 6)):
            assert torch.equal(x, rx) and torch.equal(y, ry)


def test_automatic_under_the_size_limit(uneven):
    # 48 images x 64 bytes = 3 KiB
    cfg = DataConfig(path=str(uneven), device_cache_max_mb=0.01)
    info = resolve_dataset(cfg)
    kw = dict(batch_size_per_rank=4, rank=0, world_size=1, seed=0, image_size=0, channels=0)
    notes = []
    assert isinstance(build_stream(cfg, info, log=notes.append, **kw), DeviceCachedStream)
    assert any("device cache: 48 images" in n for n in notes)
    small = DataConfig(path=str(uneven), device_cache_max_mb=0.001)
    assert not isinstance(build_stream(small, info, **kw), DeviceCachedStream)
    with pytest.raises(ConfigError, match="data.device_cache_max_mb"):
        load_config(None, ["data.device_cache_max_mb=-1"]).validate()


def test_unreadable_sample_stops_at_start_naming_the_shard(tmp_path):
    root = write_uneven(tmp_path / "d", [5, 5])
    (root / "000001.tar").write_bytes((root / "000001.tar").read_bytes()[:700])
    with pytest.raises(DataError, match="000001.tar"):
        _make(root, True, rank=0, world=1, batch=2)


TINY = ["model.g_width=8", "model.d_width=8", "model.z_dim=8", "train.batch_size=16", "log.every_steps=2",
        "log.sample_every_steps=100", "checkpoint.every_steps=2", "log.progress=false", "data.random_flip=true"]


@pytest.mark.slow
def test_training_with_the_cache_equals_streaming_and_resumes_across(run, tmp_path):
    streamed, cached = tmp_path / "streamed", tmp_path / "cached"
    assert run("train", "--run-dir", streamed, "train.steps=4", *TINY).returncode == 0
    # Half with the stream, then resumed with the cache: the same batches, so the same weights.
    assert run("train", "--run-dir", cached, "train.steps=2", *TINY).returncode == 0
    res = run("train", "--run-dir", cached, "train.steps=4", "data.device_cache=true", *TINY)
    assert res.returncode == 0, res.stderr
    assert "device cache: 1797 images" in res.stdout
    for name in ("model.pt", "optim.pt"):
        a = torch.load(streamed / "ckpt" / "step_00000004" / name, map_location="cpu", weights_only=True)
        b = torch.load(cached / "ckpt" / "step_00000004" / name, map_location="cpu", weights_only=True)
        assert_states_equal(a, b, name)
