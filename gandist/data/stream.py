"""The streaming loader: shards -> (rank, worker) -> shuffled, decoded, augmented uint8 batches.

Order is a pure function of (seed, epoch, rank, worker, position), never of timing or of the
global RNG, so a run is reproducible and a restored stream continues exactly where it stopped:

* ``epoch`` mode: the shard list is permuted by (seed, epoch) and read as one sequence of N
  samples. Rank r owns the contiguous range [r*S, (r+1)*S) with S = floor(N / (world*B)) * B, so
  every rank runs exactly S/B steps (no DDP hang on uneven shards); the N - world*S samples at
  the end of the permuted order are dropped this epoch (a different tail each epoch) and the
  count is reported. Within a rank, worker w owns a contiguous run of whole batches. Ranges cut
  through shards at sample granularity (the manifest gives counts), so any number of shards works,
  even fewer than ranks x workers: workers then read different parts of one shard.
* a position saved at one shape (world size, batch per rank, workers) and continued at another
  (``ImageStream.continue_from``) reads the rest of its epoch: the samples the saved shape had
  not read, split the same way (:mod:`gandist.data.epoch_legs`), so the epoch stays exactly-once.
* ``resampled`` mode: each (rank, worker) draws shards with replacement (weighted by sample count)
  from its own seeded generator: an infinite stream, different on every rank and worker.

Shuffling is a permutation of consecutive chunks of ``data.shuffle_buffer`` samples of a worker's
stream, seeded by the chunk's index. Unlike webdataset's reservoir ``shuffle`` (whose state is
the history of the stream), this makes the stream position-addressable: resuming at batch k skips
whole shards by their manifest counts without reading them and re-reads at most one chunk, so a
resume costs the same for 2,000 samples or 2 billion (block shards make that chunk cheap too).

Corrupt samples (undecodable image, missing/out-of-range label, truncated or missing shard) are
replaced by a good sample of the same batch — batches stay full and positions stay fixed — and
counted; more than ``data.max_skipped_fraction`` of a rank's epoch stops the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

import numpy as np
import torch

from gandist.config import DataConfig
from gandist.data import images as im
from gandist.data import worker_signals
from gandist.data.buffers import ReadBufferPool
from gandist.data.epoch_legs import (AUGMENT, CHUNK, RESAMPLE, SHARD_ORDER, Leg, consumed_per_worker, leg_key,
                                     position_segments, remaining_positions, seeded_rng, split_batches, worker_range)
from gandist.data.remote import RemoteShards, ShardCache
from gandist.data.reader import RawBlock, RawSample, check_block_labels, decode_sample, iter_blocks, iter_samples
from gandist.data.worker_pool import SHM_DIR, SharedBatchSlots, WorkerPool
from gandist.errors import DataError

log = logging.getLogger("gandist.data")

# Stream ids mixed into seeds so the generators for different purposes never coincide.
_SHARD_ORDER, _RESAMPLE, _CHUNK, _AUGMENT = SHARD_ORDER, RESAMPLE, CHUNK, AUGMENT
_rng = seeded_rng

# Batches a loader worker may have ready ahead of training (its ring of shared slots).
SLOTS_PER_WORKER = 4


@dataclass
class StreamPlan:
    """Everything a (rank, worker) needs to produce its batches; plain data, pickled to workers."""

    urls: list[str]
    counts: list[int]
    sample_format: str
    block_size: int
    num_classes: int
    mode: str
    seed: int
    rank: int
    world_size: int
    num_workers: int  # >= 1 (0 DataLoader workers = 1 in-process worker)
    batch_size: int
    chunk_size: int  # shuffle window; 0: no shuffling
    image_size: int
    channels: int
    random_flip: bool
    random_crop_pad: int = 0
    jpeg_decoder: str = "pil"  # resolved: "pil" or "simplejpeg" (gandist.data.jpeg)
    remote: RemoteShards | None = None  # shards in an object store: fetched into a local cache first
    # Epoch ``legs_epoch`` was read in part at other shapes before this one (a resume at another
    # world size, batch per rank or worker count): it goes on over what they left (epoch_legs).
    legs: tuple[Leg, ...] = ()
    legs_epoch: int = -1

    @property
    def num_samples(self) -> int:
        return sum(self.counts)

    def shard_path(self, s: int) -> str:
        """Where shard ``s`` is read from: its URL, or a verified local copy of a remote one."""
        if self.remote is None:
            return self.urls[s]
        cache = getattr(self, "_cache", None)
        if cache is None:  # one per process (each loader worker makes its own)
            cache = self._cache = ShardCache(self.remote)
        return cache.local_path(s, self.urls[s])

    def cut_epoch(self, epoch: int) -> bool:
        return bool(self.legs) and epoch == self.legs_epoch

    def leg_key(self, epoch: int) -> tuple[int, ...]:
        """Mixed into the shuffle and augmentation seeds of ``epoch`` (empty unless it was cut)."""
        return leg_key(len(self.legs)) if self.cut_epoch(epoch) else ()

    def positions(self, epoch: int) -> np.ndarray | None:
        """The positions of ``epoch``'s order this shape reads from (sorted); None: all of them."""
        if not self.cut_epoch(epoch):
            return None
        key = (self.legs, epoch)  # the rest of the plan never changes
        cached = getattr(self, "_positions_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, remaining_positions(self.num_samples, self.legs, seed=self.seed, chunk_size=self.chunk_size,
                                               epoch=epoch))
            self._positions_cache = cached
        return cached[1]

    def batches_per_rank(self, epoch: int | None = None) -> int:
        """Batches per rank of a whole epoch, or of ``epoch`` (less when it was cut)."""
        pos = None if epoch is None else self.positions(epoch)
        n = self.num_samples if pos is None else len(pos)
        return n // (self.world_size * self.batch_size)

    def worker_batches(self, epoch: int | None = None) -> list[int]:
        """Batches per worker in one epoch of this rank (the first ones get the remainder)."""
        return split_batches(self.batches_per_rank(epoch), self.num_workers)

    # Segments: (shard index, first sample, stop sample) read in order by one worker.
    def epoch_segments(self, epoch: int, worker: int) -> Iterator[tuple[int, int, int]]:
        order = _rng(self.seed, _SHARD_ORDER, epoch).permutation(len(self.urls))
        pos = self.positions(epoch)
        if pos is not None:
            lo, hi = worker_range(len(pos), self.world_size, self.batch_size, self.num_workers, self.rank, worker)
            yield from position_segments(pos[lo:hi], order, self.counts)
            return
        lo, hi = worker_range(self.num_samples, self.world_size, self.batch_size, self.num_workers, self.rank, worker)
        pos = 0
        for s in order:
            c = self.counts[s]
            a, b = max(lo, pos), min(hi, pos + c)
            if a < b:
                yield int(s), a - pos, b - pos
            pos += c
            if pos >= hi:
                return

    def resampled_segments(self, worker: int) -> Iterator[tuple[int, int, int]]:
        rng = _rng(self.seed, _RESAMPLE, self.rank, worker)
        p = np.asarray(self.counts, dtype=np.float64)
        p /= p.sum()
        while True:
            for s in rng.choice(len(self.urls), size=256, p=p):
                yield int(s), 0, self.counts[s]


def _skip(segments: Iterator[tuple[int, int, int]], num: int) -> Iterator[tuple[int, int, int]]:
    """Drop the first ``num`` samples of a segment stream without reading any shard."""
    for s, a, b in segments:
        if num >= b - a:
            num -= b - a
            continue
        yield s, a + num, b
        num = 0
        yield from segments
        return


class _Chunk:
    """Up to ``chunk_size`` consecutive samples of a worker's stream: raw per-image ``samples``, or
    (block shards) the chunk's ``blocks`` (HWC arrays at the training size; None for a damaged
    one) with each chunk position's block (``part_of``) and row in it (``row_of``), and all labels.
    ``bad`` marks samples known to be unreadable. ``buffers``: the pooled read buffers this chunk
    is the last user of (a block cut by a chunk boundary belongs to the later chunk), given back
    once its last row is in a batch."""

    def __init__(self, samples: list[RawSample] | None = None, blocks: list[np.ndarray | None] | None = None,
                 part_of: np.ndarray | None = None, row_of: np.ndarray | None = None,
                 labels: np.ndarray | None = None, bad: dict[int, str] | None = None, n: int = 0,
                 buffers: list[bytearray] | None = None):
        self.samples, self.blocks, self.part_of, self.row_of = samples, blocks, part_of, row_of
        self.labels, self.bad, self.n = labels, bad or {}, n
        self.buffers = buffers or []


def _read_chunks(plan: StreamPlan, segments: Iterator[tuple[int, int, int]], size: int,
                 pool: ReadBufferPool | None = None) -> Iterator[_Chunk]:
    if plan.sample_format != "blocks":
        buf: list[RawSample] = []
        for s, a, b in segments:
            for smp in iter_samples(plan.shard_path(s), a, b, plan.counts[s]):
                buf.append(smp)
                if len(buf) == size:
                    yield _Chunk(samples=buf, n=len(buf))
                    buf = []
        if buf:
            yield _Chunk(samples=buf, n=len(buf))
        return
    parts: list[RawBlock] = []
    have = 0
    for s, a, b in segments:
        for blk in iter_blocks(plan.shard_path(s), a, b, plan.block_size, plan.counts[s], pool):
            while blk.n:
                take = min(blk.n, size - have)
                if take == blk.n:
                    head, blk = blk, RawBlock(blk.url, blk.key, None, None, 0)
                else:  # the rest, read by the next chunk, keeps the buffer
                    head = RawBlock(blk.url, blk.key, None if blk.imgs is None else blk.imgs[:take],
                                    None if blk.labels is None else blk.labels[:take], take, blk.error)
                    blk = RawBlock(blk.url, blk.key, None if blk.imgs is None else blk.imgs[take:],
                                   None if blk.labels is None else blk.labels[take:], blk.n - take, blk.error,
                                   blk.buffer)
                parts.append(head)
                have += head.n
                if have == size:
                    yield _blocks_chunk(parts, plan)
                    parts, have = [], 0
    if parts:
        yield _blocks_chunk(parts, plan)


def _blocks_chunk(parts: list[RawBlock], plan: StreamPlan) -> _Chunk:
    """The chunk's blocks, converted to the training size/channels (a no-op view when they match),
    not copied: each batch gathers its rows straight from them (a chunk-sized copy was a 100 MB
    allocation at 128 px, and its page faults and cache misses cost more than the gather)."""
    size, ch = plan.image_size, plan.channels
    blocks: list[np.ndarray | None] = []
    labels, sizes = [], []
    bad: dict[int, str] = {}
    pos = 0
    for p in parts:
        err = p.error or check_block_labels(p, plan.num_classes)
        x_bhwc = None
        if not err:
            try:
                x_bhwc = im.convert_batch(p.imgs, size, ch)
            except DataError as e:
                err = f"block {p.key}: {e}"
        if err:
            for i in range(p.n):
                bad[pos + i] = f"shard {p.url}: {err}"
            x_bhwc = None
        blocks.append(x_bhwc)
        labels.append(p.labels if not err and p.labels is not None else np.full(p.n, -1, np.int64))
        sizes.append(p.n)
        pos += p.n
    part_of = np.repeat(np.arange(len(parts)), sizes)
    row_of = np.arange(pos) - np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)
    buffers = [p.buffer for p in parts if p.buffer is not None]
    return _Chunk(blocks=blocks, part_of=part_of, row_of=row_of, labels=np.concatenate(labels), bad=bad, n=pos,
                  buffers=buffers)


def worker_batches(plan: StreamPlan, epoch: int, worker: int, skip_batches: int, num_batches: int | None,
                   pool: ReadBufferPool | None = None, out: Callable[[], np.ndarray] | None = None) -> Iterator[tuple]:
    """Batches ``skip_batches``.. of one (rank, worker) stream: ``(img_bchw uint8, labels int64,
    num_skipped, messages)``; ``num_batches`` None: infinite (resampled mode). ``pool``: where block
    members are read into (pass one pool for all epochs of a worker, so its buffers stay warm).
    ``out()``: the array each batch's images are written into (default: a new one per batch)."""
    B = plan.batch_size
    C = plan.chunk_size or B
    start = skip_batches * B
    first_chunk = start // C
    if plan.mode == "epoch":
        segments = plan.epoch_segments(epoch, worker)
    else:
        segments = plan.resampled_segments(worker)
    segments = _skip(iter(segments), first_chunk * C)
    k = skip_batches
    if num_batches is not None and k >= num_batches:
        return
    pending: list[tuple[_Chunk, np.ndarray]] = []
    num_pending = 0
    last_good: tuple[np.ndarray, np.ndarray] | None = None
    pool = pool or ReadBufferPool()
    for ci, chunk in enumerate(_read_chunks(plan, segments, C, pool), start=first_chunk):
        if plan.chunk_size:
            perm = _rng(plan.seed, _CHUNK, epoch, plan.rank, worker, ci, *plan.leg_key(epoch)).permutation(chunk.n)
        else:
            perm = np.arange(chunk.n)
        if ci == first_chunk:
            perm = perm[start - first_chunk * C :]
        pending.append((chunk, perm))
        num_pending += len(perm)
        while num_pending >= B:
            parts, need = [], B
            used_up: list[_Chunk] = []
            while need:
                ch, idx = pending[0]
                parts.append((ch, idx[:need]))
                if len(idx) <= need:
                    used_up.append(pending.pop(0)[0])
                    need -= len(idx)
                else:
                    pending[0] = (ch, idx[need:])
                    need = 0
            num_pending -= B
            rng = _rng(plan.seed, _AUGMENT, epoch, plan.rank, worker, k, *plan.leg_key(epoch)) if plan.random_flip or plan.random_crop_pad else None
            flip = flip_mask(rng, B) if plan.random_flip else None  # drawn first, as augment_batch_np does
            x, y, n_bad, msgs = _assemble(plan, parts, last_good, flip, None if out is None else out())
            last_good = (x, y)
            # The batch holds copies of its rows: the used-up chunks' buffers can take the next reads.
            del parts
            for ch in used_up:
                for buf in ch.buffers:
                    pool.give_back(buf)
                ch.buffers = []
            yield _finish(plan, x, rng), torch.from_numpy(y), n_bad, msgs
            k += 1
            if num_batches is not None and k >= num_batches:
                return
    if num_batches is not None and k < num_batches:
        raise AssertionError(f"worker {worker} of rank {plan.rank} ran out of samples at batch {k} of {num_batches}")


def _assemble(plan: StreamPlan, parts: list[tuple[_Chunk, np.ndarray]], last_good,
              flip: np.ndarray | None = None, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Decode one batch: (x_bchw uint8 at the target size/channels, labels, num bad, messages),
    the images at the positions ``flip`` marks mirrored left-right; written into ``out`` if given."""
    size, ch = plan.image_size, plan.channels
    bad: list[int] = []
    msgs: list[str] = []
    b = sum(len(idx) for _, idx in parts)
    x = np.empty((b, ch, size, size), np.uint8) if out is None else out
    flipped = flip if flip is not None else np.zeros(b, bool)
    if parts[0][0].blocks is not None:  # block shards: gather rows from the chunk's blocks
        # Per block and flip: its rows gathered (HWC, contiguous rows) and written into the batch
        # with the layout change, and the flip, in the same copy: two passes per sample, as
        # reading the block and transposing it would take anyway (a separate flip pass cost
        # 0.7 ms of 5 per 64 px batch of 256).
        y = np.empty(b, np.int64)
        pos = 0
        for c, idx in parts:
            part, row = c.part_of[idx], c.row_of[idx]
            mirrored = flipped[pos: pos + len(idx)]
            for p in np.unique(part):
                block = c.blocks[p]
                for mirror in (False, True):
                    sel = np.flatnonzero((part == p) & (mirrored == mirror))
                    if not len(sel):
                        continue
                    if block is None:
                        x[pos + sel] = 0
                        continue
                    rows_bhwc = block[row[sel]]
                    x[pos + sel] = (rows_bhwc[:, :, ::-1] if mirror else rows_bhwc).transpose(0, 3, 1, 2)
            y[pos: pos + len(idx)] = c.labels[idx]
            if c.bad:
                for j, i in enumerate(idx):
                    if int(i) in c.bad:
                        bad.append(pos + j)
                        msgs.append(c.bad[int(i)])
            pos += len(idx)
    else:
        labels = []
        for c, idx in parts:
            for i in idx:
                s = c.samples[int(i)]
                j = len(labels)
                try:
                    a, label = decode_sample(s, plan.num_classes, size, plan.jpeg_decoder)
                    x[j] = im.convert(a, size, ch).transpose(2, 0, 1)
                except Exception as e:  # noqa: BLE001 - counted and replaced below
                    bad.append(j)
                    msgs.append(f"shard {s.url}: sample {s.key}: {e}")
                    x[j], label = 0, -1
                labels.append(label)
        y = np.asarray(labels, dtype=np.int64)
        if flip is not None:
            x[flipped] = x[flipped, :, :, ::-1]
    if bad:
        good = sorted(set(range(len(y))) - set(bad))
        if good:
            # Each bad slot takes the next good sample of the batch (cyclically): deterministic,
            # and keeps the batch full so every rank still runs the same number of steps. The
            # copy is mirrored again when the two slots' flips differ.
            for i in bad:
                j = next((g for g in good if g > i), good[0])
                x[i], y[i] = (x[j, :, :, ::-1] if flipped[i] != flipped[j] else x[j]), y[j]
        elif last_good is not None:
            x[:], y[:] = last_good[0], last_good[1]
            x[flipped] = x[flipped, :, :, ::-1]
        else:
            raise DataError(f"every sample of a batch is unreadable, first: {msgs[0]}; run `gandist shards verify`")
    return x, y, len(bad), msgs


def _finish(plan: StreamPlan, x_bchw: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
    """uint8 BCHW batch (owned, contiguous, flips already applied) -> tensor, randomly cropped
    with ``rng`` (the batch's augmentation generator, its flip draw taken). Augmentation runs in
    numpy: torch's strided uint8 kernels measured ~20x slower here (and would contend with the
    training loop's threads)."""
    if plan.random_crop_pad:
        x_bchw = augment_batch_np(x_bchw, rng, False, plan.random_crop_pad)
    return torch.from_numpy(x_bchw)


def flip_mask(rng: np.random.Generator, b: int) -> np.ndarray:
    """Which of ``b`` images are mirrored: the first draw of a batch's augmentation generator."""
    return rng.random(b) < 0.5


def augment_batch_np(x: np.ndarray, rng: np.random.Generator, flip: bool, crop_pad: int) -> np.ndarray:
    """Random horizontal flip, then random crop after reflect padding by ``crop_pad`` pixels, of a
    whole uint8 BCHW batch (contiguous; modified in place where possible)."""
    b, c, h, w = x.shape
    if flip:
        flipped = np.flatnonzero(flip_mask(rng, b))
        x[flipped] = x[flipped, :, :, ::-1]
    if crop_pad:
        p = crop_pad
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
        dy = rng.integers(0, 2 * p + 1, b)
        dx = rng.integers(0, 2 * p + 1, b)
        for i in range(b):
            x[i] = xp[i, :, dy[i]: dy[i] + h, dx[i]: dx[i] + w]
    return x


def worker_items(plan: StreamPlan, epoch: int, k: int, worker: int, batches=None,
                 out: Callable[[], np.ndarray] | None = None) -> Iterator[tuple | None]:
    """Everything one (rank, worker) delivers from the rank's position (``epoch``, ``k`` batches
    into it) on, over all later epochs: batches, and ``None`` placeholders that keep the loader's
    round-robin over workers aligned with the rank's order.

    The loader (torch's DataLoader, or :class:`~gandist.data.worker_pool.WorkerPool`, which keeps
    its order) takes item i from worker i % W. A worker that runs out would be dropped from
    that cycle, so a worker with fewer batches this epoch (``worker_batches`` gives the first
    n % W workers one more) pads its epoch with placeholders to ``ceil(n / W)`` items, and on
    resume the workers whose slot of the current round was already consumed start with one: the
    real items then arrive in exactly the rank's order, epoch after epoch, from one set of worker
    processes (a new DataLoader per epoch paid worker start-up and shuffle-window fill each epoch).
    ``batches``: what makes a worker's batches (default :func:`worker_batches`, reading shards;
    the device cache passes its own, with the same signature). ``out``: see :func:`worker_batches`.
    """
    worker_batches_fn = batches or partial(worker_batches, pool=ReadBufferPool(), out=out)
    W = plan.num_workers
    if plan.mode != "epoch":  # resampled: one infinite stream per worker, epoch 0
        done = k // W + (worker < k % W)
        if worker < k % W:
            yield None
        yield from worker_batches_fn(plan, 0, worker, done, None)
        return
    if k >= plan.batches_per_rank(epoch):
        epoch, k = epoch + 1, 0
    skip = consumed_per_worker(plan.worker_batches(epoch), k)[worker]
    if worker < k % W:
        yield None
    while True:
        per_worker = plan.worker_batches(epoch)  # per epoch: a cut epoch has fewer
        yield from worker_batches_fn(plan, epoch, worker, skip, per_worker[worker])
        for _ in range(-(-sum(per_worker) // W) - per_worker[worker]):
            yield None
        epoch, skip = epoch + 1, 0


def _as_is(item):
    return item


class _WorkerDataset(torch.utils.data.IterableDataset):
    """What each DataLoader worker runs: its own slice of the plan, chosen by its worker id."""

    def __init__(self, plan: StreamPlan, epoch: int, k: int):
        self.plan, self.epoch, self.k = plan, epoch, k

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w = info.id if info is not None else 0  # (torch's worker loop already set one thread)
        yield from worker_items(self.plan, self.epoch, self.k, w)


class _DataLoaderWorkers:
    """Iterates a DataLoader whose workers ignore the training signals, and ends them on
    ``close()``, also at interpreter exit: torch's own cleanup runs when the iterator is collected,
    which at exit comes after multiprocessing's hook has started waiting for the workers."""

    def __init__(self, loader: torch.utils.data.DataLoader):
        self._it = iter(loader)  # starts the workers
        worker_signals.close_before_exit(self)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def close(self) -> None:
        it, self._it = self._it, None
        if it is None:
            return
        # torch's graceful end (stop event, then join); it then SIGTERMs stragglers, which ignore it.
        it._shutdown_workers()
        for w in it._workers:
            if w.is_alive():
                w.kill()
                w.join()


def _pool_items(plan: StreamPlan, epoch: int, k: int, worker: int, out: Callable[[], np.ndarray]) -> Iterator[tuple | None]:
    return worker_items(plan, epoch, k, worker, out=out)


class ImageStream:
    """Infinite iterator of ``(images uint8 [B, C, H, W], labels int64 [B])`` for one rank, over
    epochs; ``state_dict``/``load_state_dict`` hold its position (see the module docstring)."""

    def __init__(self, plan: StreamPlan, data_cfg: DataConfig, num_loader_workers: int):
        self.plan = plan
        self.num_loader_workers = num_loader_workers
        self.max_skipped_fraction = data_cfg.max_skipped_fraction
        self.pin_memory = torch.cuda.is_available()
        self.batches_per_epoch: int | None = plan.batches_per_rank() if plan.mode == "epoch" else None
        self.epoch = 0
        self.batches_in_epoch = 0
        self.num_skipped = 0
        self.num_skipped_in_epoch = 0
        self._gen: Iterator | None = None
        self._warned_shm = False

    # Position -------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> int | None:
        """Batches per rank of ``epoch`` (fewer than ``batches_per_epoch`` in a cut epoch)."""
        return None if self.batches_per_epoch is None else self.plan.batches_per_rank(epoch)

    def state_dict(self) -> dict[str, Any]:
        epoch, k = self.epoch, self.batches_in_epoch
        n = self._epoch_batches(epoch)
        if n is not None and k >= n:
            epoch, k = epoch + 1, 0
        return {
            "epoch": epoch,
            "batches_in_epoch": k,
            "seed": self.plan.seed,
            "num_skipped": self.num_skipped,
            "num_skipped_in_epoch": self.num_skipped_in_epoch if k else 0,
            "mode": self.plan.mode,
            "rank": self.plan.rank,
            "world_size": self.plan.world_size,
            "batch_size_per_rank": self.plan.batch_size,
            "num_workers": self.num_loader_workers,
            "num_samples": self.plan.num_samples,
            # The shapes this epoch was read at before this one (see gandist.data.epoch_legs).
            "legs": [leg.as_dict() for leg in self.plan.legs] if self.plan.cut_epoch(epoch) else [],
        }

    def same_shape(self, d: dict[str, Any]) -> bool:
        """Whether a saved position came from a stream of this shape (then ``load_state_dict``
        continues it batch for batch; otherwise ``continue_from`` continues its epoch)."""
        mine = self.state_dict()
        return all(d.get(k, mine[k]) == mine[k] for k in ("world_size", "batch_size_per_rank", "num_workers"))

    def load_state_dict(self, d: dict[str, Any]) -> None:
        mine = self.state_dict()
        for key in ("seed", "mode", "world_size", "batch_size_per_rank", "num_workers", "num_samples"):
            if key in d and d[key] != mine[key]:
                raise DataError(
                    f"data stream state: saved {key}={d[key]!r} but this stream has {mine[key]!r}; the saved position "
                    "cannot be continued exactly (change it back, or start a new run)"
                )
        self.close()
        self.epoch = int(d["epoch"])
        self._set_legs(tuple(Leg.from_dict(x) for x in d.get("legs", [])))
        self.batches_in_epoch = int(d["batches_in_epoch"])
        self.num_skipped = int(d.get("num_skipped", 0))
        self.num_skipped_in_epoch = int(d.get("num_skipped_in_epoch", 0))

    def continue_from(self, d: dict[str, Any]) -> None:
        """Continue a position saved by a stream of another shape (world size, batch per rank,
        loader workers): same seed and epoch. In epoch mode the rest of that epoch is the samples
        the saved shape had not read yet, split among this shape's ranks and workers, so every
        sample of the epoch is read once across the change (:mod:`gandist.data.epoch_legs`);
        ``d`` is any rank's state (ranks run in lockstep)."""
        mine = self.state_dict()
        for key in ("seed", "mode", "num_samples"):
            if key in d and d[key] != mine[key]:
                raise DataError(f"data stream state: saved {key}={d[key]!r} but this stream has {mine[key]!r}; cannot continue it")
        self.close()
        self.num_skipped = int(d.get("num_skipped", 0))
        self.num_skipped_in_epoch = int(d.get("num_skipped_in_epoch", 0))
        self.epoch = int(d["epoch"])
        k = int(d["batches_in_epoch"])
        if self.batches_per_epoch is None:  # resampled: no epoch to keep whole; the same number of samples on
            consumed = k * int(d["batch_size_per_rank"]) * int(d["world_size"])
            self.batches_in_epoch = consumed // (self.plan.batch_size * self.plan.world_size)
            return
        legs = tuple(Leg.from_dict(x) for x in d.get("legs", []))
        if k:
            legs += (Leg(int(d["world_size"]), int(d["batch_size_per_rank"]), max(1, int(d["num_workers"])), k),)
        self._set_legs(legs)
        self.batches_in_epoch = 0
        if self._epoch_batches(self.epoch) == 0:  # less than one global batch was left of it
            self.epoch += 1
            self.num_skipped_in_epoch = 0

    def _set_legs(self, legs: tuple[Leg, ...]) -> None:
        self.plan.legs, self.plan.legs_epoch = legs, (self.epoch if legs else -1)

    # Iteration ------------------------------------------------------------------------------
    def __iter__(self):
        self.close()
        self._gen = self._run()
        return self._gen

    def _run(self):
        source = self._source()
        try:
            yield from self._items(source)
        finally:
            if hasattr(source, "close"):  # worker processes stop now, not when collected
                source.close()

    def _items(self, source):
        for item in source:
            if item is None:  # a worker's placeholder (see worker_items)
                continue
            n = self._epoch_batches(self.epoch)
            if n is not None and self.batches_in_epoch >= n:
                self.epoch += 1
                self.batches_in_epoch = 0
                self.num_skipped_in_epoch = 0
            x, y, n_bad, msgs = item
            if n_bad:
                self._count_skipped(n_bad, msgs)
            self.batches_in_epoch += 1
            yield x, y
        raise AssertionError("the data stream ended")  # workers' streams are infinite

    def _source(self) -> Iterator[tuple | None]:
        """Every item from the current position on, over all epochs (one loader for the run)."""
        if self.batches_per_epoch == 0:
            raise AssertionError("empty epoch")
        if self.num_loader_workers == 0:
            return worker_items(self.plan, self.epoch, self.batches_in_epoch, 0)
        p = self.plan
        if not self.pin_memory:
            # CPU training: our own worker processes write batches into shared slots (see
            # gandist.data.worker_pool). Pinned batches for CUDA go through the DataLoader,
            # whose pin thread copies them into page-locked memory in the background.
            shape = (p.batch_size, p.channels, p.image_size, p.image_size)
            depth = SLOTS_PER_WORKER
            if SharedBatchSlots.fits(self.num_loader_workers, depth, shape):
                return iter(WorkerPool(partial(_pool_items, p, self.epoch, self.batches_in_epoch),
                                       self.num_loader_workers, depth, shape))
            if not self._warned_shm:
                self._warned_shm = True
                log.warning("data: not enough free space in %s for the loader's %.0f MB of batch slots; using "
                            "torch's DataLoader, which sends each batch in a new shared-memory segment (slower)",
                            SHM_DIR, SharedBatchSlots.nbytes(self.num_loader_workers, depth, shape) / 2**20)
        # Its workers start in iter(): signals sent to the whole group meanwhile wait until they
        # ignore them, as the pool's do (gandist.data.worker_signals).
        with worker_signals.blocked_while_starting_workers() as training_signals:
            loader = torch.utils.data.DataLoader(
                _WorkerDataset(p, self.epoch, self.batches_in_epoch),
                batch_size=None,  # workers batch themselves: whole batches cross the process boundary
                num_workers=self.num_loader_workers,
                pin_memory=self.pin_memory,
                # Its own generator: DataLoader otherwise draws its base seed from the global torch
                # RNG, which would shift the training loop's random numbers.
                generator=torch.Generator().manual_seed(p.seed),
                prefetch_factor=4,
                collate_fn=_as_is,  # items are finished batches: nothing to convert
                worker_init_fn=partial(worker_signals.ignore_in_dataloader_worker, training_signals),
            )
            return _DataLoaderWorkers(loader)

    def _count_skipped(self, n: int, msgs: list[str]) -> None:
        self.num_skipped += n
        self.num_skipped_in_epoch += n
        for m in msgs[:5]:
            log.warning("data: skipped unreadable sample (rank %d): %s", self.plan.rank, m)
        if self.plan.mode == "epoch":
            denom = self.plan.batches_per_rank() * self.plan.batch_size
            skipped = self.num_skipped_in_epoch
        else:
            denom = max(self.plan.num_samples // self.plan.world_size, (self.batches_in_epoch + 1) * self.plan.batch_size)
            skipped = self.num_skipped
        if skipped > self.max_skipped_fraction * denom:
            raise DataError(
                f"data: {skipped} of {denom} samples on rank {self.plan.rank} could not be read, more than "
                f"data.max_skipped_fraction={self.max_skipped_fraction}; last: {msgs[-1] if msgs else '?'}. "
                "Check the shards with `gandist shards verify DIR`"
            )

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
            self._gen = None
