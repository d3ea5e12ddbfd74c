"""Loader worker processes that fill rings of shared-memory batch slots ahead of the training process.

Why not torch's DataLoader for this: each batch a DataLoader worker returns crosses to the main
process as a tensor in a *new* shared-memory segment (the worker copies the batch into a fresh
segment, sends its file descriptor over a socket, the main process maps it, faults every page in
and unmaps it when the batch is freed), and every batch costs a request and a reply through
pickled queues. For block shards, where making a 32 px batch of 256 takes under a millisecond,
that overhead dominated: one worker delivered 0.40x of what one process reading the same bytes
did on 2 cores.

Here each worker owns a ring of ``depth`` batch-sized slots, allocated once before the workers
start, and runs ahead freely: it assembles batch ``n`` directly in slot ``n % depth`` (no copy),
then signals it filled; the main process takes items in the order the DataLoader would (item
``i`` from worker ``i % W``: the order :func:`gandist.data.stream.worker_items` is built for),
copies the slot into a batch it owns and signals it free. A bounded buffer: two semaphores per
worker, no polling, nothing pickled per batch.

Failures are loud: an exception in a worker reaches the main process with its traceback (a
:class:`DataError` stays a DataError, so the CLI's exit codes hold), and a worker that dies
(killed, out of memory) is named with its exit code instead of hanging the run.
"""

from __future__ import annotations

import json
import os
import traceback
from typing import Any, Callable, Iterator

import numpy as np
import torch

from gandist.data import worker_signals
from gandist.errors import DataError

SHM_DIR = "/dev/shm"
_MESSAGE_BYTES = 4096  # per slot: the skipped-sample messages of a batch (the first few are logged)


def shared_memory_free_bytes() -> int | None:
    """Free bytes of the shared-memory file system (None where there is none to ask)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class SharedBatchSlots:
    """``num_workers`` rings of ``depth`` slots: uint8 images (``batch_shape``), int64 labels, and
    per slot whether it holds a batch or a placeholder, its skipped count and messages."""

    def __init__(self, num_workers: int, depth: int, batch_shape: tuple[int, int, int, int]):
        self.depth = depth
        self.images = torch.empty((num_workers, depth, *batch_shape), dtype=torch.uint8).share_memory_()
        self.labels = torch.empty((num_workers, depth, batch_shape[0]), dtype=torch.int64).share_memory_()
        self.meta = torch.zeros((num_workers, depth, 3), dtype=torch.int64).share_memory_()  # is batch, skipped, msg bytes
        self.messages = torch.zeros((num_workers, depth, _MESSAGE_BYTES), dtype=torch.uint8).share_memory_()

    @staticmethod
    def nbytes(num_workers: int, depth: int, batch_shape: tuple[int, int, int, int]) -> int:
        return num_workers * depth * (int(np.prod(batch_shape)) + 8 * batch_shape[0] + 24 + _MESSAGE_BYTES)

    @classmethod
    def fits(cls, num_workers: int, depth: int, batch_shape: tuple[int, int, int, int]) -> bool:
        """Whether the slots take at most half the free shared memory. A full tmpfs does not fail
        the allocation: it kills the process that touches the missing page (SIGBUS), as small
        container /dev/shm sizes (64 MB by default) do to DataLoader workers."""
        free = shared_memory_free_bytes()
        return free is not None and cls.nbytes(num_workers, depth, batch_shape) <= free // 2

    def write_item(self, worker: int, serial: int, item: tuple | None) -> None:
        """Record item ``serial`` of a worker (its images already assembled in the slot, or copied
        in here when they were made elsewhere); None: a placeholder."""
        slot = serial % self.depth
        meta = self.meta[worker, slot].numpy()
        if item is None:
            meta[:] = (0, 0, 0)
            return
        x, y, n_bad, msgs = item
        images = self.images[worker, slot].numpy()
        x = x.numpy() if isinstance(x, torch.Tensor) else x
        if x.ctypes.data != images.ctypes.data:
            images[...] = x
        self.labels[worker, slot].numpy()[...] = y.numpy() if isinstance(y, torch.Tensor) else y
        text = b""
        if n_bad:
            keep = msgs[:4] + msgs[-1:] if len(msgs) > 5 else msgs  # what the stream logs and reports
            text = json.dumps(keep).encode()[:_MESSAGE_BYTES]
            self.messages[worker, slot].numpy()[: len(text)] = np.frombuffer(text, np.uint8)
        meta[:] = (1, int(n_bad), len(text))

    def read_item(self, worker: int, serial: int) -> tuple | None:
        """A copy of the worker's item ``serial``: (images, labels, skipped, messages), or None."""
        slot = serial % self.depth
        is_batch, n_bad, n_text = (int(v) for v in self.meta[worker, slot])
        if not is_batch:
            return None
        msgs: list[str] = []
        if n_text:
            raw = self.messages[worker, slot].numpy()[:n_text].tobytes()
            try:
                msgs = json.loads(raw.decode())
            except ValueError:  # cut at the byte limit
                msgs = [raw.decode(errors="replace")]
        return self.images[worker, slot].clone(), self.labels[worker, slot].clone(), n_bad, msgs


class WorkerPool:
    """``num_workers`` processes, each running ``make_items(worker, out)`` (an infinite iterator of
    batches ``(images, labels, skipped, messages)`` and None placeholders, whose images it assembles
    in ``out()`` when it can) into its ring. Iterating yields the items in round-robin order."""

    def __init__(self, make_items: Callable[[int, Callable[[], np.ndarray]], Iterator[tuple | None]],
                 num_workers: int, depth: int, batch_shape: tuple[int, int, int, int]):
        ctx = torch.multiprocessing.get_context()
        self.num_workers = num_workers
        self.slots = SharedBatchSlots(num_workers, depth, batch_shape)
        self._filled = [ctx.Semaphore(0) for _ in range(num_workers)]
        self._free = [ctx.Semaphore(depth) for _ in range(num_workers)]
        self._stop = ctx.Event()
        self._errors = ctx.SimpleQueue()  # put() is synchronous: the error is there before the wake-up
        self._procs: list = []
        # Signals sent to the whole group while the workers start wait until they ignore them.
        with worker_signals.blocked_while_starting_workers() as training_signals:
            for w in range(num_workers):
                p = ctx.Process(target=_worker_main, name=f"gandist-loader-{w}", daemon=True,
                                args=(make_items, w, self.slots, self._filled[w], self._free[w], self._stop,
                                      self._errors, training_signals))
                p.start()
                self._procs.append(p)
        worker_signals.close_before_exit(self)

    def __iter__(self) -> Iterator[tuple | None]:
        try:
            serial = [0] * self.num_workers
            w = 0
            while True:
                self._wait_filled(w)
                item = self.slots.read_item(w, serial[w])
                self._free[w].release()
                serial[w] += 1
                yield item
                w = (w + 1) % self.num_workers
        finally:
            self.close()

    def _wait_filled(self, w: int) -> None:
        while not self._filled[w].acquire(timeout=1.0):
            self._raise_worker_error()
            p = self._procs[w]
            if not p.is_alive():
                raise RuntimeError(f"data loader worker {w} (pid {p.pid}) exited unexpectedly with code {p.exitcode}"
                                   + (" (killed by a signal: out of memory?)" if (p.exitcode or 0) < 0 else ""))
        self._raise_worker_error()

    def _raise_worker_error(self) -> None:
        if self._errors.empty():
            return
        w, kind, message, tb = self._errors.get()
        if kind == "DataError":
            raise DataError(message)
        raise RuntimeError(f"data loader worker {w} failed: {kind}: {message}\n{tb}")

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        for sem in self._free:  # wake workers waiting for a slot, so they see the stop
            sem.release()
        for p in self._procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        self._errors.close()


def _worker_main(make_items, worker: int, slots: SharedBatchSlots, filled, free, stop, errors,
                 training_signals: set) -> None:
    worker_signals.ignore_in_worker(training_signals)  # the trainer's signals are for the trainer
    torch.set_num_threads(1)  # workers are processes; threads inside them only contend
    parent = os.getppid()
    state: dict[str, Any] = {"serial": 0, "has_slot": False}

    def claim_slot() -> None:
        """Wait until the next slot is free (the main process has copied out what it held)."""
        if state["has_slot"]:
            return
        while not free.acquire(timeout=1.0):
            if stop.is_set() or os.getppid() != parent:
                raise SystemExit(0)
        if stop.is_set():
            raise SystemExit(0)
        state["has_slot"] = True

    def out() -> np.ndarray:
        claim_slot()
        return slots.images[worker, state["serial"] % slots.depth].numpy()

    try:
        for item in make_items(worker, out):
            claim_slot()
            slots.write_item(worker, state["serial"], item)
            state["serial"] += 1
            state["has_slot"] = False
            filled.release()
    except SystemExit:
        return
    except BaseException as e:  # noqa: BLE001 - reported to the training process, which raises it
        errors.put((worker, type(e).__name__, str(e), traceback.format_exc()))
        filled.release()  # wake the main process if it waits on this worker
