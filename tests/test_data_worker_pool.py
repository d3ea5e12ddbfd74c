"""Loader worker processes that fill rings of shared-memory slots: the same batches as torch's
DataLoader transport, no slot overwritten before the training process has copied it out, worker
failures raised (not hung on), workers gone after close, and a fallback where /dev/shm is short."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gandist.config import DataConfig
from gandist.data import build_stream, resolve_dataset
from gandist.data.worker_pool import SharedBatchSlots, WorkerPool
from gandist.errors import DataError

from data_helpers import write_uneven

COUNTS = [10, 3, 17, 6, 1, 9, 2]
SHAPE = (2, 1, 2, 2)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pool")
    return {"png": write_uneven(base / "png", COUNTS), "blocks": write_uneven(base / "blocks", COUNTS, fmt="blocks")}


def _stream(root: Path, workers: int):
    cfg = DataConfig(num_workers=workers, shuffle_buffer=5, random_flip=True, random_crop_pad=1)
    info = resolve_dataset(DataConfig(path=str(root)))
    return build_stream(cfg, info, batch_size_per_rank=4, rank=0, world_size=1, seed=3, image_size=0, channels=0)


def _pools(monkeypatch) -> list[WorkerPool]:
    made: list[WorkerPool] = []
    init = WorkerPool.__init__

    def record(self, *a, **k):
        init(self, *a, **k)
        made.append(self)

    monkeypatch.setattr(WorkerPool, "__init__", record)
    return made


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "blocks"])
def test_pool_gives_the_batches_of_the_dataloader_transport(shards, fmt, monkeypatch):
    n = 3 * (sum(COUNTS) // 4)  # three epochs: every slot of both rings is reused several times
    pools = _pools(monkeypatch)
    s = _stream(shards[fmt], 2)
    it = iter(s)
    got = [next(it) for _ in range(n)]
    assert len(pools) == 1, "the workers did not run in a WorkerPool"
    pids = [p.pid for p in pools[0]._procs]
    s.close()
    for pid in pids:  # closed: the worker processes are gone, not left to the garbage collector
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    monkeypatch.setattr(SharedBatchSlots, "fits", classmethod(lambda cls, *a: False))
    s = _stream(shards[fmt], 2)
    it = iter(s)
    want = [next(it) for _ in range(n)]
    s.close()
    assert len(pools) == 1
    for j, ((xa, ya), (xb, yb)) in enumerate(zip(want, got)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb), f"batch {j}"
    # Batches handed out are the caller's own: a later batch never changes an earlier one.
    assert len({xb.data_ptr() for xb, _ in got[:8]}) == 8


def test_short_shared_memory_falls_back_with_a_warning(shards, monkeypatch, caplog):
    monkeypatch.setattr("gandist.data.worker_pool.shared_memory_free_bytes", lambda: 100)  # bytes
    with caplog.at_level(logging.WARNING, logger="gandist.data"):
        s = _stream(shards["blocks"], 1)
        it = iter(s)
        got = [next(it) for _ in range(4)]
        s.close()
    assert len(got) == 4
    assert any("/dev/shm" in r.getMessage() and "batch slots" in r.getMessage() for r in caplog.records)


# Workers' item makers: module level, so they would also pickle under the spawn start method.
def _numbered(worker: int, out):
    """Batches whose every pixel is their serial number (mod 256), every third item a placeholder."""
    serial = 0
    while True:
        if serial % 3 == 2:
            yield None
        else:
            x = out()
            x[...] = serial % 256
            yield torch.from_numpy(x), torch.full((SHAPE[0],), serial), 0, []
        serial += 1


def _fails_with_data_error(worker: int, out):
    yield torch.zeros(SHAPE, dtype=torch.uint8), torch.zeros(SHAPE[0], dtype=torch.int64), 1, ["shard s.tar: sample k: bad"]
    raise DataError("every sample of a batch is unreadable, first: shard s.tar: sample k")


def _fails_with_bug(worker: int, out):
    raise ZeroDivisionError("a bug in the worker")
    yield  # unreachable: makes this a generator


def _dies(worker: int, out):
    os.kill(os.getpid(), signal.SIGKILL)
    yield None


def test_ring_slots_are_not_overwritten_before_they_are_read():
    pool = WorkerPool(_numbered, num_workers=2, depth=2, batch_shape=SHAPE)
    it = iter(pool)
    try:
        for i in range(60):
            time.sleep(0.002 if i % 7 == 0 else 0)  # a slow consumer: the workers run ahead and must wait
            item = next(it)
            serial = i // 2  # round robin over 2 workers
            if serial % 3 == 2:
                assert item is None, f"item {i}"
                continue
            x, y, n_bad, msgs = item
            assert int(x.min()) == int(x.max()) == serial % 256, f"item {i}: slot overwritten or misread"
            assert y.tolist() == [serial] * SHAPE[0] and n_bad == 0 and msgs == []
    finally:
        it.close()
    assert all(not p.is_alive() for p in pool._procs)


def test_worker_errors_reach_the_training_process():
    it = iter(WorkerPool(_fails_with_data_error, num_workers=1, depth=2, batch_shape=SHAPE))
    x, y, n_bad, msgs = next(it)  # the batch before the failure, with its skipped-sample message
    assert n_bad == 1 and msgs == ["shard s.tar: sample k: bad"]
    with pytest.raises(DataError, match="every sample of a batch is unreadable"):
        next(it)
    it = iter(WorkerPool(_fails_with_bug, num_workers=2, depth=2, batch_shape=SHAPE))
    with pytest.raises(RuntimeError, match=r"worker 0 failed: ZeroDivisionError: a bug in the worker(.|\n)*Traceback"):
        next(it)


def test_a_killed_worker_is_an_error_not_a_hang():
    it = iter(WorkerPool(_dies, num_workers=1, depth=2, batch_shape=SHAPE))
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"worker 0 \(pid \d+\) exited unexpectedly with code -9"):
        next(it)
    assert time.monotonic() - t0 < 30


def test_slot_messages_keep_what_the_stream_logs_and_reports():
    slots = SharedBatchSlots(1, 2, SHAPE)
    msgs = [f"shard a.tar: sample {i}: bad" for i in range(9)]
    x = np.full(SHAPE, 7, np.uint8)
    slots.write_item(0, 5, (x, np.arange(2), 9, msgs))
    x2, y2, n_bad, got = slots.read_item(0, 5)
    assert int(x2.min()) == 7 and y2.tolist() == [0, 1] and n_bad == 9
    assert got == msgs[:4] + msgs[-1:]  # the first ones are logged, the last one named in the error


def _loader_workers(before: list[multiprocessing.Process]) -> list[multiprocessing.Process]:
    """The child processes started since ``before`` (a list from multiprocessing.active_children)."""
    workers = [p for p in multiprocessing.active_children() if p not in before]
    assert len(workers) == 2, workers
    return workers


@pytest.mark.parametrize("transport", ["pool", "dataloader"])
def test_workers_ignore_the_signals_the_training_process_handles(shards, monkeypatch, transport):
    # Preemption installs handlers for SIGTERM/SIGUSR1 in the training process, and Slurm or a
    # terminal's Ctrl-C signals every process of the step or group: a worker killed by the signal
    # would fail the save's last fetch, and one running the trainer's handler would act as the trainer.
    if transport == "dataloader":
        monkeypatch.setattr(SharedBatchSlots, "fits", classmethod(lambda cls, *a: False))
    parent, got = os.getpid(), []

    def trainer_handler(num, frame):
        if os.getpid() != parent:
            raise RuntimeError("the training process's SIGTERM handler ran in a loader worker")
        got.append(num)

    previous = signal.signal(signal.SIGTERM, trainer_handler)
    try:
        before = multiprocessing.active_children()
        s = _stream(shards["blocks"], 2)
        it = iter(s)
        next(it)
        workers = _loader_workers(before)
        for p in workers:
            os.kill(p.pid, signal.SIGTERM)
            os.kill(p.pid, signal.SIGINT)
        time.sleep(0.2)
        for _ in range(3 * sum(COUNTS) // 4):  # three epochs
            next(it)
        assert all(p.is_alive() for p in workers)
        s.close()
        assert not any(p.is_alive() for p in workers)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert got == []  # the signals went to the workers, not here


@pytest.mark.parametrize("transport", ["pool", "dataloader"])
def test_a_signal_while_a_worker_starts_is_not_handled_in_it(shards, monkeypatch, transport):
    # A group-wide signal can reach a worker between its fork and its ignoring the signal. The
    # training signals are blocked over that window, so the worker never runs the trainer's
    # handler: here each worker signals itself at the very start, and the handler would fail it.
    from gandist.data import worker_signals

    if transport == "dataloader":
        monkeypatch.setattr(SharedBatchSlots, "fits", classmethod(lambda cls, *a: False))
    parent, got = os.getpid(), []
    ignore = worker_signals.ignore_in_worker

    def trainer_handler(num, frame):
        if os.getpid() != parent:
            raise RuntimeError("the training process's SIGTERM handler ran in a loader worker")
        got.append(num)

    def signalled_first(signals):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # a pending unblocked signal's Python handler runs within these
            pass
        ignore(signals)

    monkeypatch.setattr(worker_signals, "ignore_in_worker", signalled_first)
    previous = signal.signal(signal.SIGTERM, trainer_handler)
    try:
        s = _stream(shards["blocks"], 2)
        it = iter(s)
        for _ in range(3 * sum(COUNTS) // 4):
            next(it)
        s.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert got == []


@pytest.mark.parametrize("transport", ["pool", "dataloader"])
def test_a_process_that_leaves_its_loader_open_still_exits(shards, transport, tmp_path):
    # Workers ignore SIGTERM, and multiprocessing's exit hook ends daemonic children with SIGTERM and
    # then waits for them: unless the loader is closed first, a script that never closes its stream
    # would hang at exit.
    script = tmp_path / "open_loader.py"
    script.write_text(f"""
import signal, sys
signal.signal(signal.SIGTERM, lambda num, frame: None)  # as the trainer's preemption handler
sys.path.insert(0, {str(Path(__file__).parent)!r})
from gandist.data.worker_pool import SharedBatchSlots
if {transport == "dataloader"!r}:
    SharedBatchSlots.fits = classmethod(lambda cls, *a: False)
from test_data_worker_pool import _stream
it = iter(_stream(__import__("pathlib").Path({str(shards["blocks"])!r}), 2))
next(it)
print("read a batch; exiting with the loader open", flush=True)
""")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "exiting with the loader open" in out.stdout
