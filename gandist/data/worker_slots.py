"""How loader workers hand batches to the training process: rings of shared-memory slots.

A batch a DataLoader worker returns crosses to the main process as a tensor in a *new*
shared-memory segment: the worker copies it into a fresh segment, sends its file descriptor over
a socket, and the main process maps it and faults every page in, then unmaps it when the batch is
freed. For a 32 px batch of 256 that took longer than making the batch (block shards with one
worker ran at 0.40x of one process reading the same bytes on 2 cores).

Here each worker owns a ring of ``depth`` batch-sized slots, allocated once by the main process
before the workers fork (so both sides keep the pages mapped). A worker writes batch ``n`` into
slot ``n % depth`` (the batch is assembled there: no extra copy) and sends only ``(worker, n)``; the main process copies the slot into a batch
it owns and counts it taken. The DataLoader keeps at most ``prefetch_factor`` requests in
flight per worker, so with ``depth = prefetch_factor + 2`` a worker never finds its next slot
still untaken; it still checks (and waits), so a slot is never overwritten before it is read.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

SHM_DIR = "/dev/shm"


def shared_memory_free_bytes() -> int | None:
    """Free bytes of the shared-memory file system (None where there is none to ask)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class SharedBatchSlots:
    """``num_workers`` rings of ``depth`` uint8 image slots (``batch_shape``) and int64 labels."""

    def __init__(self, num_workers: int, depth: int, batch_shape: tuple[int, int, int, int]):
        self.depth = depth
        self.images = torch.empty((num_workers, depth, *batch_shape), dtype=torch.uint8).share_memory_()
        self.labels = torch.empty((num_workers, depth, batch_shape[0]), dtype=torch.int64).share_memory_()
        # taken[w]: how many of worker w's batches the main process has copied out.
        self.taken = torch.zeros(num_workers, dtype=torch.int64).share_memory_()

    @staticmethod
    def nbytes(num_workers: int, depth: int, batch_shape: tuple[int, int, int, int]) -> int:
        return num_workers * depth * (int(np.prod(batch_shape)) + 8 * batch_shape[0])

    @classmethod
    def fits(cls, num_workers: int, depth: int, batch_shape: tuple[int, int, int, int]) -> bool:
        """Whether the slots take at most half the free shared memory. A full tmpfs does not fail
        the allocation: it kills the process that touches the missing page (SIGBUS), as small
        container /dev/shm sizes (64 MB by default) do to DataLoader workers."""
        free = shared_memory_free_bytes()
        return free is not None and cls.nbytes(num_workers, depth, batch_shape) <= free // 2

    def __getstate__(self):  # pickled to spawned workers: the tensors travel as shared memory
        return {"depth": self.depth, "images": self.images, "labels": self.labels, "taken": self.taken}

    def __setstate__(self, state):
        self.__dict__.update(state)

    # Worker side -------------------------------------------------------------------------------
    def writer(self, worker: int) -> SlotWriter:
        return SlotWriter(self, worker)

    # Main-process side -------------------------------------------------------------------------
    def take(self, worker: int, serial: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A copy of the worker's batch ``serial`` (images, labels); frees its slot."""
        if serial != int(self.taken[worker]):
            raise AssertionError(f"loader worker {worker}: got batch {serial}, expected {int(self.taken[worker])}")
        slot = serial % self.depth
        images = self.images[worker, slot].clone()
        labels = self.labels[worker, slot].clone()
        self.taken[worker] = serial + 1
        return images, labels


class SlotWriter:
    """One worker's side of its ring: ``next_images()`` is the buffer the next batch is assembled
    in (waiting, if ever needed, until the main process has taken what the slot held), ``send``
    completes that batch and gives the small item that tells the main process where it is."""

    def __init__(self, slots: SharedBatchSlots, worker: int):
        self.slots, self.worker = slots, worker
        self.serial = 0  # the batch the next send completes
        self._images = slots.images[worker].numpy()
        self._labels = slots.labels[worker].numpy()
        self._taken = slots.taken.numpy()
        self._parent = os.getppid()

    def next_images(self) -> np.ndarray:
        while self.serial - int(self._taken[self.worker]) >= self.slots.depth:
            if os.getppid() != self._parent:  # the training process is gone: nobody will take it
                raise SystemExit(0)
            time.sleep(0.0005)
        return self._images[self.serial % self.slots.depth]

    def send(self, images: np.ndarray, labels: np.ndarray, num_skipped: int, messages: list[str]) -> tuple:
        slot = self.serial % self.slots.depth
        if images.ctypes.data != self._images[slot].ctypes.data:  # made elsewhere: copy it in
            self.next_images()[...] = images
        self._labels[slot] = labels
        item = (self.worker, self.serial, num_skipped, messages)
        self.serial += 1
        return item
