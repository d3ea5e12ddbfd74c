"""What is left of an epoch when a run resumes it at another shape (world size, batch per rank,
loader workers), so that every sample of the epoch is still read exactly once.

At one shape, rank r and worker w of an epoch read a contiguous range of the epoch's order of
samples, shuffled in chunks (see :mod:`gandist.data.stream`). Ranks run in lockstep, so a run
saved k batches into the epoch has read, on every rank and worker, the first samples of that
worker's shuffled range: a set of positions that is a pure function of (seed, epoch, shape, k)
and is recomputed here from the saved position alone, without the run's files.

Resumed at another shape, the epoch goes on over the positions not yet read (in the epoch's
order), split among the new ranks and workers exactly as a whole epoch is split: one *leg*.
A change in the middle of that leg adds a second leg, and so on; the next epoch is whole again.
As in every epoch, fewer than one global batch of what is left is dropped so that all ranks run
the same number of steps; with the global batch kept across the change (``gandist train`` keeps
it) nothing more is dropped than the uninterrupted epoch would drop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np

# Stream ids mixed into seeds so the generators for different purposes never coincide.
SHARD_ORDER, RESAMPLE, CHUNK, AUGMENT = 1, 2, 3, 4


def seeded_rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]))


def split_batches(num_batches: int, num_workers: int) -> list[int]:
    """Batches per worker of one rank's ``num_batches`` (the first ones get the remainder)."""
    return [num_batches // num_workers + (i < num_batches % num_workers) for i in range(num_workers)]


def consumed_per_worker(worker_batches: list[int], k: int) -> list[int]:
    """Batches each worker has delivered after the rank consumed ``k``: torch's DataLoader takes
    batches from its workers round-robin, skipping workers that are exhausted."""
    done = [0] * len(worker_batches)
    while k > 0:
        progressed = False
        for w, n in enumerate(worker_batches):
            if k and done[w] < n:
                done[w] += 1
                k -= 1
                progressed = True
        if not progressed:
            break
    return done


@dataclass(frozen=True)
class Leg:
    """One shape an epoch was read at, and how far: ``batches`` per rank before the change."""

    world_size: int
    batch_size: int
    num_workers: int  # >= 1 (no loader workers reads as one worker in the training process)
    batches: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Leg:
        return cls(int(d["world_size"]), int(d["batch_size"]), max(1, int(d["num_workers"])), int(d["batches"]))


def leg_key(leg_index: int) -> tuple[int, ...]:
    """Mixed into a leg's shuffle and augmentation seeds; empty for an epoch's first leg, so an
    epoch that was never cut is seeded as it always was."""
    return (leg_index,) if leg_index else ()


def worker_range(num_positions: int, world_size: int, batch_size: int, num_workers: int, rank: int,
                 worker: int) -> tuple[int, int]:
    """[lo, hi) of the epoch's (or leg's) positions that (rank, worker) reads."""
    per_rank = num_positions // (world_size * batch_size) * batch_size
    wb = split_batches(per_rank // batch_size, num_workers)
    lo = rank * per_rank + sum(wb[:worker]) * batch_size
    return lo, lo + wb[worker] * batch_size


def read_in_leg(num_positions: int, leg: Leg, *, seed: int, chunk_size: int, epoch: int, leg_index: int) -> np.ndarray:
    """Indices (into a leg's positions, in order) that ``leg.batches`` batches per rank read: on
    each worker, the first samples of its range in the shuffled-chunk order of
    ``stream.worker_batches``."""
    n = num_positions // (leg.world_size * leg.batch_size)
    if not 0 <= leg.batches <= n:
        raise ValueError(f"a leg of {n} batches per rank cannot have read {leg.batches}")
    done = consumed_per_worker(split_batches(n, leg.num_workers), leg.batches)
    out: list[np.ndarray] = []
    for rank in range(leg.world_size):
        for worker in range(leg.num_workers):
            lo, hi = worker_range(num_positions, leg.world_size, leg.batch_size, leg.num_workers, rank, worker)
            m = done[worker] * leg.batch_size
            if not m:
                continue
            if not chunk_size:
                out.append(np.arange(lo, lo + m))
                continue
            whole, rest = divmod(m, chunk_size)
            out.append(np.arange(lo, lo + whole * chunk_size))
            if rest:
                start = lo + whole * chunk_size
                size = min(chunk_size, hi - start)
                perm = seeded_rng(seed, CHUNK, epoch, rank, worker, whole, *leg_key(leg_index)).permutation(size)
                out.append(start + perm[:rest])
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def remaining_positions(num_samples: int, legs: tuple[Leg, ...], *, seed: int, chunk_size: int, epoch: int) -> np.ndarray:
    """The epoch's positions (sorted) that ``legs`` left unread."""
    positions = np.arange(num_samples, dtype=np.int64)
    for i, leg in enumerate(legs):
        keep = np.ones(len(positions), bool)
        keep[read_in_leg(len(positions), leg, seed=seed, chunk_size=chunk_size, epoch=epoch, leg_index=i)] = False
        positions = positions[keep]
    return positions


def position_segments(positions: np.ndarray, order: np.ndarray, counts: list[int]) -> Iterator[tuple[int, int, int]]:
    """Sorted positions of the epoch's order (shards ``order`` read one after another) as the
    reader's segments: (shard index, first sample, stop sample), runs of consecutive samples."""
    if not len(positions):
        return
    ends = np.cumsum(np.asarray(counts, np.int64)[order])
    starts = ends - np.asarray(counts, np.int64)[order]
    slot = np.searchsorted(ends, positions, side="right")  # which shard of the order holds each position
    cut = np.flatnonzero((np.diff(positions) != 1) | (np.diff(slot) != 0)) + 1
    firsts = np.concatenate([[0], cut])
    lasts = np.concatenate([cut, [len(positions)]]) - 1
    for f, last in zip(firsts, lasts):
        i = slot[f]
        yield int(order[i]), int(positions[f] - starts[i]), int(positions[last] - starts[i] + 1)
