"""The one object that knows ranks: collectives, a device, and how work splits over ranks.

The training ``Engine`` extends it; the verbs that only generate or evaluate (``eval``,
``synth``) use it directly. Everything outside ``gandist.engine`` asks it (``is_main``,
``reduce_mean``, ``gather``, ``main_first()``) instead of reading ranks itself.
"""

from __future__ import annotations

import contextlib
import datetime
import random
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from gandist.engine.launch import launch_env
from gandist.engine.peers import Peer, describe_lost_peer, is_lost_peer_error, this_peer


class ProcessGroup:
    """This process's place in the job: ``rank`` of ``world_size``, computing on ``device``."""

    def __init__(self, timeout_minutes: float = 30.0):
        """Join the launcher's process group (made here if the launcher started several processes
        and nobody made it yet); a single process without a launcher is a group of one."""
        env = launch_env()
        self.timeout_minutes = timeout_minutes
        owns = False
        if not dist.is_initialized() and env.world_size > 1:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
            owns = True
        rank = dist.get_rank() if dist.is_initialized() else 0
        world_size = dist.get_world_size() if dist.is_initialized() else 1
        self._attach(rank, world_size, default_device(), owns_group=owns)

    def _attach(self, rank: int, world_size: int, device: torch.device, owns_group: bool = False) -> None:
        """Record this process's place; engines call it with what their backend set up."""
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self._owns_group = owns_group
        self.peers: list[Peer] = self._gather_peers()

    def _gather_peers(self) -> list[Peer]:
        """Every rank's host, addresses and pid, asked while all ranks are alive (see ``peers``)."""
        me = this_peer(self.rank)
        if not self._distributed():
            return [me]
        everyone: list = [None] * self.world_size
        dist.all_gather_object(everyone, me)
        return everyone

    def explain_failure(self, error: BaseException) -> str | None:
        """A message naming the rank this one lost when ``error`` is a collective failing because a
        peer died or hung; None for any other error."""
        if self.world_size == 1 or not is_lost_peer_error(error):
            return None
        return describe_lost_peer(error, self.peers, self.rank, self.timeout_minutes)

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files (rank zero)."""
        return self.rank == 0

    def _distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    # Collectives --------------------------------------------------------------------------------
    def reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of ``values`` over all ranks (every rank gets the result, as float32 on this device)."""
        values = values.detach().to(self.device, torch.float32).clone()
        if self._distributed():
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def reduce_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of ``values`` over all ranks (every rank gets the result)."""
        return self.reduce_sum(values) / self.world_size

    def all_agree(self, flag: bool) -> bool:
        """True on every rank iff ``flag`` is true on every rank (a min all-reduce)."""
        # int32, not bool: gloo and NCCL both reduce it.
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        if self._distributed():
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def any_true(self, flags: list[bool]) -> list[bool]:
        """Element-wise "some rank's flag is true", every rank gets the same answer (one all-reduce)."""
        t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=self.device)
        if self._distributed():
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def broadcast_int(self, value: int, src: int = 0) -> int:
        """Rank ``src``'s ``value`` on every rank (int64: exact, unlike a float32 sum)."""
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        if self._distributed():
            dist.broadcast(t, src=src)
        return int(t.item())

    def barrier(self) -> None:
        """Wait until every rank reaches this point."""
        if self._distributed():
            dist.barrier()

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate ``tensor`` (same shape on every rank) along dim 0 from all ranks, on every rank."""
        if not self._distributed():
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank zero runs the body first (e.g. builds a cache); the others run it after, and
        find the work done."""
        if not self.is_main:
            self.barrier()
        try:
            yield
        finally:
            if self.is_main:
                self.barrier()

    # Splitting work ---------------------------------------------------------------------------
    def seed_rngs(self, seed: int) -> None:
        """torch's global RNG the same on every rank (identical weight init); Python's and
        NumPy's per rank (anything drawn from them differs between ranks)."""
        torch.manual_seed(seed)
        random.seed(seed + self.rank)
        np.random.seed(seed + self.rank)

    def seed_for(self, *parts: int) -> int:
        """A 63-bit seed from ``parts`` and this rank: each rank draws its own noise, and a draw is
        a pure function of (parts, rank), so a resumed run draws what it would have drawn."""
        return hash((*parts, self.rank)) & 0x7FFF_FFFF_FFFF_FFFF

    def shard_range(self, num_items: int, batch_size: int) -> tuple[int, int, int]:
        """(start, stop, slice_len) of this rank's contiguous part of ``num_items``, cut at
        multiples of ``batch_size`` so N ranks see exactly the batches one process would.
        ``slice_len`` (the same on every rank) is what each rank pads to for ``gather_rows``."""
        return rank_slice(num_items, batch_size, self.rank, self.world_size)

    def gather_rows(self, rows: torch.Tensor, slice_len: int, num_items: int) -> torch.Tensor:
        """Pad this rank's rows to ``slice_len``, gather every rank's in rank order, drop padding (CPU)."""
        pad = slice_len - rows.shape[0]
        if pad:
            rows = torch.cat([rows, rows.new_zeros((pad, *rows.shape[1:]))])
        if self.world_size > 1:
            rows = self.gather(rows.to(self.device)).cpu()
        return rows[:num_items]

    def close(self) -> None:
        """Destroy the group this object made, or gloo aborts at exit and the launcher reports failure."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rank_slice(num_items: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int, int]:
    """``ProcessGroup.shard_range`` for an explicit rank (pure arithmetic, for tests and planning)."""
    batches = -(-num_items // batch_size)
    slice_len = -(-batches // world_size) * batch_size
    start = min(rank * slice_len, num_items)
    return start, min(start + slice_len, num_items), slice_len


def default_device() -> torch.device:
    """This process's GPU (by its local rank) when there is one, else the CPU."""
    if torch.cuda.is_available():
        device = torch.device("cuda", launch_env().local_rank)
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")
