"""The streaming loader's contract: exactly-once epochs with equal steps per rank, resampled
streams, exact resume, corrupt-sample handling, and clear errors for bad paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gandist.config import DataConfig
from gandist.data import build_stream, resolve_dataset
from gandist.errors import DataError

from data_helpers import collect, index_of, write_uneven

COUNTS = [10, 3, 17, 6, 1, 9, 2]  # 7 uneven shards, 48 samples


@pytest.fixture(scope="module")
def uneven(tmp_path_factory) -> Path:
    return write_uneven(tmp_path_factory.mktemp("uneven"), COUNTS)


@pytest.fixture(scope="module")
def uneven_blocks(tmp_path_factory) -> Path:
    return write_uneven(tmp_path_factory.mktemp("uneven_blocks"), COUNTS, fmt="blocks", block_size=4)


def _epoch_keys(root: Path, *, world: int, workers: int, batch: int, seed: int = 0, epochs: int = 1):
    cfg = DataConfig(num_workers=workers, shuffle_buffer=5)
    per_rank = []
    for r in range(world):
        batches = collect(cfg, root, world=world, batch=batch, seed=seed, rank=r,
                          num_batches=epochs * (sum(COUNTS) // (world * batch)))
        per_rank.append(batches)
    return per_rank


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "blocks"])
def test_epoch_mode_every_key_once_across_2_ranks_x_3_workers(fmt, uneven, uneven_blocks):
    root = uneven if fmt == "png" else uneven_blocks
    per_rank = _epoch_keys(root, world=2, workers=3, batch=4, epochs=2)
    # 48 samples / (2 ranks x 4) = 6 batches per rank per epoch; 2 epochs.
    assert [len(b) for b in per_rank] == [12, 12]
    for epoch in range(2):
        keys = [index_of(img) for batches in per_rank for x, _ in batches[6 * epoch: 6 * epoch + 6] for img in x]
        assert sorted(keys) == list(range(48)), f"epoch {epoch}"
        labels = [int(v) for batches in per_rank for _, y in batches[6 * epoch: 6 * epoch + 6] for v in y]
        assert sorted(labels) == sorted(i % 5 for i in range(48))
    # Shuffled per epoch: the two epochs differ in order.
    e0 = [index_of(img) for x, _ in per_rank[0][:6] for img in x]
    e1 = [index_of(img) for x, _ in per_rank[0][6:] for img in x]
    assert e0 != e1


def test_epoch_mode_uneven_total_drops_remainder_equal_steps(uneven):
    # batch 5, 2 ranks: 48 // 10 = 4 batches per rank, 8 samples dropped, none duplicated.
    cfg = DataConfig(num_workers=0, shuffle_buffer=7)
    keys = []
    for r in range(2):
        info = resolve_dataset(DataConfig(path=str(uneven)))
        s = build_stream(cfg, info, batch_size_per_rank=5, rank=r, world_size=2, seed=1, image_size=0, channels=0)
        assert s.batches_per_epoch == 4
        it = iter(s)
        for _ in range(4):
            x, y = next(it)
            assert x.shape == (5, 1, 8, 8) and x.dtype == torch.uint8 and y.dtype == torch.int64
            keys += [index_of(img) for img in x.numpy()]
    assert len(keys) == 40 and len(set(keys)) == 40


def test_fewer_shards_than_ranks_x_workers_still_exactly_once(tmp_path):
    root = write_uneven(tmp_path / "two", [13, 11])  # 2 shards for 2 ranks x 2 workers
    cfg = DataConfig(num_workers=0, shuffle_buffer=4)
    keys = []
    for r in range(2):
        keys += [index_of(img) for x, _ in collect(cfg, root, world=2, batch=3, rank=r) for img in x]
    assert sorted(keys) == list(range(24))


def test_resampled_mode_same_seed_same_stream_ranks_differ(uneven):
    cfg = DataConfig(mode="resampled", shuffle_buffer=8)
    a0 = collect(cfg, uneven, world=2, batch=4, seed=5, rank=0, num_batches=10)
    a0_again = collect(cfg, uneven, world=2, batch=4, seed=5, rank=0, num_batches=10)
    a1 = collect(cfg, uneven, world=2, batch=4, seed=5, rank=1, num_batches=10)
    b0 = collect(cfg, uneven, world=2, batch=4, seed=6, rank=0, num_batches=10)
    k = lambda batches: [index_of(img) for x, _ in batches for img in x]  # noqa: E731
    assert k(a0) == k(a0_again)
    assert k(a0) != k(a1)
    assert k(a0) != k(b0)
    info = resolve_dataset(DataConfig(path=str(uneven)))
    s = build_stream(cfg, info, batch_size_per_rank=4, rank=0, world_size=2, seed=5, image_size=0, channels=0)
    assert s.batches_per_epoch is None


def _assert_resumes_exactly(make, ref: list, cut: int) -> dict:
    """A stream from ``make()`` stopped after ``cut`` batches, saved and loaded into a new one,
    goes on with exactly the batches ``ref[cut:]``; returns the saved state."""
    s = make()
    it = iter(s)
    for _ in range(cut):
        next(it)
    state = s.state_dict()
    s.close()
    r = make()
    r.load_state_dict(state)
    it = iter(r)
    for j in range(cut, len(ref)):
        x, y = next(it)
        assert torch.equal(x, ref[j][0]) and torch.equal(y, ref[j][1]), f"cut {cut}, batch {j}"
    r.close()
    return state


@pytest.mark.parametrize("mode,workers", [("epoch", 0), ("resampled", 0), pytest.param("epoch", 2, marks=pytest.mark.slow)])
def test_resume_continues_exactly(uneven, mode, workers):
    cfg = DataConfig(mode=mode, num_workers=workers, shuffle_buffer=6, random_flip=True, random_crop_pad=1)
    info = resolve_dataset(DataConfig(path=str(uneven)))

    def make():
        return build_stream(cfg, info, batch_size_per_rank=4, rank=1, world_size=2, seed=9, image_size=0, channels=0)

    ref_stream = make()
    it = iter(ref_stream)
    ref = [next(it) for _ in range(17)]  # crosses two epoch boundaries (6 batches per epoch)
    ref_stream.close()
    for cut in (0, 4, 6, 11):
        state = _assert_resumes_exactly(make, ref, cut)
        assert set(state) >= {"epoch", "batches_in_epoch", "seed", "num_skipped"}


def test_pooled_block_reads_give_the_same_batches_and_reuse_buffers(uneven_blocks):
    # Block members read into recycled buffers: a buffer handed back while a chunk still gathers
    # from it (a block cut by a chunk boundary is read by two chunks) would show here as batches
    # that differ from reads into fresh memory. Chunks of 5 over blocks of 4 cut most blocks.
    from gandist.data.buffers import ReadBufferPool
    from gandist.data.stream import worker_batches

    cfg = DataConfig(num_workers=0, shuffle_buffer=5, random_flip=True)
    info = resolve_dataset(DataConfig(path=str(uneven_blocks)))
    plan = build_stream(cfg, info, batch_size_per_rank=3, rank=0, world_size=1, seed=4, image_size=0, channels=0).plan
    fresh = ReadBufferPool(min_bytes=1 << 62)  # never pools: every member gets new bytes
    pooled = ReadBufferPool(min_bytes=1)
    n = plan.batches_per_rank()
    for epoch in range(3):
        want = list(worker_batches(plan, epoch, 0, 0, n, pool=fresh))
        got = list(worker_batches(plan, epoch, 0, 0, n, pool=pooled))
        assert len(got) == len(want) == n
        for j, ((xa, ya, *_), (xb, yb, *_)) in enumerate(zip(want, got)):
            assert torch.equal(xa, xb) and torch.equal(ya, yb), f"epoch {epoch}, batch {j}"
    assert fresh.num_allocated == 0
    blocks_per_epoch = sum(-(-c // 4) for c in COUNTS)  # 15
    # At most two chunks are read but not used up at once, each holding parts of at most 4 blocks
    # (5 samples can span a block's tail, the 1- and 2-sample shards and another block's head):
    # every other read reuses a buffer.
    assert 0 < pooled.num_allocated <= 8 < 3 * blocks_per_epoch
    assert pooled.num_free <= 8


def test_loader_leaves_global_rng_alone(uneven):
    torch.manual_seed(0)
    np.random.seed(0)
    before = torch.get_rng_state().clone(), np.random.get_state()[1].copy()
    collect(DataConfig(random_flip=True, num_workers=0), uneven, world=1, batch=4, num_batches=8)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])


def test_flip_augmentation_is_seeded_and_flips(uneven):
    plain = collect(DataConfig(), uneven, world=1, batch=8, num_batches=6)
    flip = collect(DataConfig(random_flip=True), uneven, world=1, batch=8, num_batches=6)
    flipped = sum(not np.array_equal(a, b) for (xa, _), (xb, _) in zip(plain, flip) for a, b in zip(xa, xb))
    mirrored = sum(np.array_equal(a[..., ::-1], b) for (xa, _), (xb, _) in zip(plain, flip) for a, b in zip(xa, xb))
    assert 8 <= flipped <= 40 and mirrored >= flipped


def test_resize_and_channels_in_loader(uneven):
    info = resolve_dataset(DataConfig(path=str(uneven)))
    s = build_stream(DataConfig(), info, batch_size_per_rank=4, rank=0, world_size=1, seed=0, image_size=16, channels=3)
    x, _ = next(iter(s))
    assert x.shape == (4, 3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def _corrupt_one_png(root: Path, shard: str, nth: int, suffix: str = ".png") -> None:
    """Overwrite the bytes of the nth member ending in ``suffix`` of a shard (a sample's PNG, or a
    block's ``.imgs.npy``), keeping its length: the tar stays valid."""
    import tarfile

    path = root / shard
    data = bytearray(path.read_bytes())
    with tarfile.open(path) as tf:
        members = [m for m in tf.getmembers() if m.name.endswith(suffix)]
        m = members[nth]
    data[m.offset_data: m.offset_data + m.size] = b"\x00" * m.size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", ["png", "blocks"])
def test_flips_and_bad_sample_copies_compose(tmp_path, fmt):
    """With random_flip each image is the unflipped stream's image, mirrored where the batch's
    flip draw says so: also a damaged sample's slot, which holds a copy of another sample (block
    shards do the flip inside the gather, so the copy must be mirrored again when the slots differ)."""
    from gandist.data.stream import _AUGMENT, _rng, flip_mask

    root = write_uneven(tmp_path / "c", COUNTS, fmt=fmt, block_size=4)
    _corrupt_one_png(root, "000002.tar", 1, ".png" if fmt == "png" else ".imgs.npy")
    info = resolve_dataset(DataConfig(path=str(root)))

    def batches(flip: bool):
        s = build_stream(DataConfig(max_skipped_fraction=1.0, random_flip=flip, num_workers=0, mode="epoch"), info, batch_size_per_rank=8, rank=0,
                         world_size=1, seed=5, image_size=0, channels=0)
        it = iter(s)
        out = [next(it)[0].numpy() for _ in range(6)]
        return out, s.num_skipped

    plain, skipped = batches(False)
    flipped, _ = batches(True)
    assert skipped >= 1
    seen_mirrored = 0
    for k, (a, b) in enumerate(zip(plain, flipped)):
        mask = flip_mask(_rng(5, _AUGMENT, 0, 0, 0, k), len(a))  # epoch 0, rank 0, worker 0, batch k
        for i in range(len(a)):
            assert np.array_equal(b[i], a[i][..., ::-1] if mask[i] else a[i]), f"batch {k}, image {i}"
            seen_mirrored += bool(mask[i]) and not np.array_equal(a[i], a[i][..., ::-1])
    assert seen_mirrored >= 5


def test_corrupt_sample_skipped_counted_and_threshold(tmp_path, caplog):
    root = write_uneven(tmp_path / "c", COUNTS)
    _corrupt_one_png(root, "000002.tar", 3)  # one of 48 samples
    info = resolve_dataset(DataConfig(path=str(root)))
    cfg = DataConfig(max_skipped_fraction=0.05)
    s = build_stream(cfg, info, batch_size_per_rank=4, rank=0, world_size=1, seed=0, image_size=0, channels=0)
    it = iter(s)
    batches = [next(it) for _ in range(12)]
    assert s.num_skipped == 1
    keys = [index_of(img) for x, _ in batches for img in x]
    assert 16 not in keys  # shard 2 starts at index 10 + 3 = 13: its 4th sample is 16
    assert len(set(keys)) == 47  # the other 47 once each; the bad slot holds a copy of one of them
    assert all(x.shape == (4, 1, 8, 8) for x, _ in batches)  # batches stay full
    assert any("000002.tar" in r.getMessage() for r in caplog.records)
    assert s.state_dict()["num_skipped"] == 1
    # Above the threshold (1 of 48 > 1%): the run stops with a clear error.
    s2 = build_stream(DataConfig(max_skipped_fraction=0.01), info, batch_size_per_rank=4, rank=0, world_size=1, seed=0, image_size=0, channels=0)
    with pytest.raises(DataError, match="000002.tar.*shards verify|max_skipped_fraction"):
        it2 = iter(s2)
        for _ in range(12):
            next(it2)


def test_truncated_shard_counts_missing_samples(tmp_path):
    root = write_uneven(tmp_path / "t", COUNTS)
    p = root / "000002.tar"
    p.write_bytes(p.read_bytes()[: 4 * 1024])  # 17 samples -> a few survive
    info = resolve_dataset(DataConfig(path=str(root)))
    s = build_stream(DataConfig(max_skipped_fraction=1.0), info, batch_size_per_rank=4, rank=0, world_size=1, seed=0, image_size=0, channels=0)
    it = iter(s)
    batches = [next(it) for _ in range(12)]
    assert len(batches) == 12
    assert 10 <= s.num_skipped <= 17  # 4 KiB keeps at most a few of the shard's 17 samples
    s3 = build_stream(DataConfig(), info, batch_size_per_rank=4, rank=0, world_size=1, seed=0, image_size=0, channels=0)
    with pytest.raises(DataError, match="could not be read"):
        it3 = iter(s3)
        for _ in range(12):
            next(it3)


def test_bad_paths_fail_at_start_naming_the_path(tmp_path, uneven):
    with pytest.raises(DataError, match="directory not found: .*nope"):
        resolve_dataset(DataConfig(path=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no shards.*empty"):
        resolve_dataset(DataConfig(path=str(tmp_path / "empty")))
    with pytest.raises(DataError, match="matches no files"):
        resolve_dataset(DataConfig(path=str(tmp_path / "empty" / "*.tar")))
    os.rename(uneven / "000003.tar", tmp_path / "moved.tar")
    try:
        with pytest.raises(DataError, match=r"1 shard file\(s\) missing: .*000003.tar"):
            resolve_dataset(DataConfig(path=str(uneven)))
        with pytest.raises(DataError, match=r"missing: .*000003.tar"):
            resolve_dataset(DataConfig(path=str(uneven) + "/{000000..000006}.tar"))
    finally:
        os.rename(tmp_path / "moved.tar", uneven / "000003.tar")


def test_brace_pattern_and_pipe_urls(uneven):
    info = resolve_dataset(DataConfig(path=str(uneven) + "/{000000..000002}.tar"))
    assert info.num_samples == 10 + 3 + 17 and len(info.urls) == 3
    pipe = f"pipe:cat {uneven}/{{000000..000006}}.tar"
    info = resolve_dataset(DataConfig(path=pipe, manifest=str(uneven / "manifest.json")))
    assert info.num_samples == 48 and info.urls[0].startswith("pipe:cat ")
    s = build_stream(DataConfig(shuffle_buffer=0), info, batch_size_per_rank=4, rank=0, world_size=1, seed=0, image_size=0, channels=0)
    it = iter(s)
    keys = [index_of(img) for _ in range(12) for img in next(it)[0].numpy()]
    assert sorted(keys) == list(range(48))
    with pytest.raises(DataError, match="data.manifest"):
        resolve_dataset(DataConfig(path=pipe))


def test_too_little_data_for_one_batch_is_an_error(uneven):
    info = resolve_dataset(DataConfig(path=str(uneven)))
    with pytest.raises(DataError, match="fewer than one batch"):
        build_stream(DataConfig(), info, batch_size_per_rank=32, rank=0, world_size=2, seed=0, image_size=0, channels=0)


def test_workers_with_unequal_batch_counts_keep_epochs_exact_and_resume(uneven):
    # 48 samples, batch 5, one rank: 9 batches per epoch over 2 workers (5 + 4): the short worker
    # pads its epoch so one set of worker processes serves every epoch in the rank's order.
    cfg = DataConfig(num_workers=2, shuffle_buffer=6, random_flip=True)
    info = resolve_dataset(DataConfig(path=str(uneven)))

    def make():
        return build_stream(cfg, info, batch_size_per_rank=5, rank=0, world_size=1, seed=3, image_size=0, channels=0)

    s = make()
    it = iter(s)
    ref = [next(it) for _ in range(27)]
    assert (s.epoch, s.batches_in_epoch) == (2, 9)
    s.close()
    for epoch in range(3):
        keys = [index_of(img) for x, _ in ref[9 * epoch: 9 * epoch + 9] for img in x.numpy()]
        assert len(set(keys)) == 45, f"epoch {epoch}: a sample repeated"
    for cut in (3, 9, 13):  # mid-round, epoch boundary, mid-round of the second epoch
        _assert_resumes_exactly(make, ref, cut)


def _keys_of_leg(info, cfg_for, shape, state, num_batches, *, seed=4):
    """Each rank of ``shape`` = (world, batch per rank, loader workers) continues ``state`` (None:
    a fresh start) and reads ``num_batches``; returns (keys read per rank, rank 0's state then)."""
    world, batch, workers = shape
    keys, saved = [], None
    for r in range(world):
        s = build_stream(cfg_for(workers), info, batch_size_per_rank=batch, rank=r, world_size=world, seed=seed,
                         image_size=0, channels=0)
        if state is not None:
            s.continue_from(state)
        it = iter(s)
        keys.append([index_of(img) for _ in range(num_batches) for img in next(it)[0].numpy()])
        if r == 0:
            saved = s.state_dict()
        s.close()
    return keys, saved


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_world_size_2_to_3_to_1_mid_epoch_reads_each_sample_once(uneven, workers):
    # Global batch 12 kept across the changes (as `gandist train` keeps it): 48 samples are 4
    # steps per epoch. 1 step at 2 ranks x 6, 1 step at 3 ranks x 4, then the last 2 steps on
    # one rank x 12 read the 24 samples the first two shapes left: all 48 once, none dropped.
    cfg_for = lambda w: DataConfig(num_workers=w, shuffle_buffer=5)  # noqa: E731 (a flip would hide index_of)
    info = resolve_dataset(DataConfig(path=str(uneven)))
    two, state = _keys_of_leg(info, cfg_for, (2, 6, workers), None, 1)
    assert state["legs"] == [] and state["batches_in_epoch"] == 1
    three, state = _keys_of_leg(info, cfg_for, (3, 4, workers + 1), state, 1)
    assert [leg["world_size"] for leg in state["legs"]] == [2] and (state["epoch"], state["batches_in_epoch"]) == (0, 1)
    one, state = _keys_of_leg(info, cfg_for, (1, 12, workers), state, 2)
    epoch0 = [k for part in (two, three, one) for keys in part for k in keys]
    assert sorted(epoch0) == list(range(48)), "a sample was repeated or lost across the world-size changes"
    assert (state["epoch"], state["batches_in_epoch"], state["legs"]) == (1, 0, [])
    # The next epoch is whole again at the new shape.
    s = build_stream(cfg_for(workers), info, batch_size_per_rank=12, rank=0, world_size=1, seed=4, image_size=0,
                     channels=0)
    s.load_state_dict(state)
    it = iter(s)
    epoch1 = [index_of(img) for _ in range(4) for img in next(it)[0].numpy()]
    s.close()
    assert sorted(epoch1) == list(range(48)) and epoch1 != sorted(epoch1)


def test_cut_epoch_resumes_exactly_at_its_own_shape_and_drops_under_one_global_batch(uneven):
    # Another global batch after the change: 2 ranks x 4 read 2 steps (16 samples); 3 ranks x 3
    # (global 9) have 32 left: 3 steps, 27 read, 5 dropped (< 9), none repeated.
    plain = DataConfig(num_workers=0, shuffle_buffer=7)
    augmented = DataConfig(num_workers=0, shuffle_buffer=7, random_flip=True, random_crop_pad=1)
    info = resolve_dataset(DataConfig(path=str(uneven)))
    first, state = _keys_of_leg(info, lambda w: plain, (2, 4, 0), None, 2)

    def make(cfg, rank):
        s = build_stream(cfg, info, batch_size_per_rank=3, rank=rank, world_size=3, seed=4, image_size=0, channels=0)
        s.continue_from(state)
        return s

    rest = []
    for r in range(3):
        s = make(plain, r)
        assert s.plan.batches_per_rank(s.epoch) == 3 and s.batches_per_epoch == 5
        it = iter(s)
        rest += [index_of(img) for _ in range(3) for img in next(it)[0].numpy()]
        s.close()
        # A save inside the cut epoch resumes bitwise at the same shape, legs and all, into the next epoch.
        ref_stream = make(augmented, r)
        it = iter(ref_stream)
        ref = [next(it) for _ in range(5)]  # 3 of the cut epoch, then 2 of the next (whole) one
        assert ref_stream.epoch == 1
        ref_stream.close()
        mid = make(augmented, r)
        it = iter(mid)
        next(it), next(it)
        saved = mid.state_dict()
        mid.close()
        assert len(saved["legs"]) == 1
        again = build_stream(augmented, info, batch_size_per_rank=3, rank=r, world_size=3, seed=4, image_size=0,
                             channels=0)
        again.load_state_dict(saved)
        it = iter(again)
        for j in range(2, 5):
            x, y = next(it)
            assert torch.equal(x, ref[j][0]) and torch.equal(y, ref[j][1]), f"rank {r}, batch {j}"
        again.close()
    read = [k for keys in first for k in keys] + rest
    assert len(read) == 16 + 27 and len(set(read)) == len(read)
