"""Loader workers hand batches over through rings of shared-memory slots: the same batches as
the DataLoader's own transport, no slot overwritten before the main process has copied it, and a
clear fallback where shared memory is short."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gandist.config import DataConfig
from gandist.data import build_stream, resolve_dataset
from gandist.data.worker_slots import SharedBatchSlots

from data_helpers import write_uneven

COUNTS = [10, 3, 17, 6, 1, 9, 2]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("slots")
    return {"png": write_uneven(base / "png", COUNTS), "blocks": write_uneven(base / "blocks", COUNTS, fmt="blocks")}


def _batches(root: Path, workers: int, n: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], object]:
    cfg = DataConfig(num_workers=workers, shuffle_buffer=5, random_flip=True, random_crop_pad=1)
    info = resolve_dataset(DataConfig(path=str(root)))
    s = build_stream(cfg, info, batch_size_per_rank=4, rank=0, world_size=1, seed=3, image_size=0, channels=0)
    it = iter(s)
    out = [next(it) for _ in range(n)]
    slots = s._slots
    s.close()
    return out, slots


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "blocks"])
def test_slots_give_the_batches_of_the_plain_transport(shards, fmt, monkeypatch):
    n = 3 * (sum(COUNTS) // 4)  # three epochs: every slot of both rings is reused several times
    got, slots = _batches(shards[fmt], 2, n)
    assert slots is not None, "the workers did not use shared slots"
    monkeypatch.setattr(SharedBatchSlots, "fits", classmethod(lambda cls, *a: False))
    want, none = _batches(shards[fmt], 2, n)
    assert none is None
    for j, ((xa, ya), (xb, yb)) in enumerate(zip(want, got)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb), f"batch {j}"
    # Batches handed out are the caller's own: a later batch never changes an earlier one.
    assert len({xb.data_ptr() for xb, _ in got[:8]}) == 8


def test_short_shared_memory_falls_back_with_a_warning(shards, monkeypatch, caplog):
    monkeypatch.setattr("gandist.data.worker_slots.shared_memory_free_bytes", lambda: 100)  # bytes: less than twice the slots need
    with caplog.at_level(logging.WARNING, logger="gandist.data"):
        got, slots = _batches(shards["blocks"], 1, 4)
    assert slots is None and len(got) == 4
    assert any("/dev/shm" in r.getMessage() and "batch slots" in r.getMessage() for r in caplog.records)


def test_writer_waits_until_the_slot_it_reuses_is_taken():
    slots = SharedBatchSlots(num_workers=1, depth=2, batch_shape=(2, 1, 2, 2))
    writer = slots.writer(0)
    for serial in range(2):  # fills both slots; nothing taken yet
        buf = writer.next_images()
        buf[...] = serial + 1
        writer.send(buf, np.array([serial, serial]), 0, [])
    reached = threading.Event()

    def third_batch():
        buf = writer.next_images()  # slot 0 again: must wait for batch 0 to be taken
        reached.set()
        buf[...] = 9
        writer.send(buf, np.array([2, 2]), 0, [])

    t = threading.Thread(target=third_batch, daemon=True)
    t.start()
    time.sleep(0.2)
    assert not reached.is_set(), "the writer overwrote a slot the main process had not taken"
    x0, y0 = slots.take(0, 0)
    t.join(timeout=10)
    assert reached.is_set()
    assert int(x0.max()) == 1 and y0.tolist() == [0, 0]  # batch 0 as written, not the later 9s
    x1, _ = slots.take(0, 1)
    x2, y2 = slots.take(0, 2)
    assert int(x1.max()) == 2 and int(x2.min()) == 9 and y2.tolist() == [2, 2]
    with pytest.raises(AssertionError, match="expected 3"):
        slots.take(0, 4)  # out of order: a lost batch is an error, not a silent repeat
