"""The whole dataset on the training device: read once, then every batch is a gather there.

For CIFAR-sized data (50,000 x 3 x 32 x 32 uint8 = 147 MiB) the streaming loader's per-batch
CPU work and host-to-device copy are the step's bottleneck on a fast GPU; airbench and FFCV keep
such sets on the GPU instead. :class:`DeviceCachedStream` is an :class:`ImageStream` whose
batches are produced by the *same* plan, with indices instead of bytes: the same permuted shard
order, the same rank and worker ranges, the same shuffle chunks, the same seeded flips and crops
(the random numbers are drawn in numpy on the host exactly as the streaming path draws them;
only the pixel work runs on the device), and the same round-robin over ``data.num_workers``
(emulated: no worker processes). So its batches equal the streaming path's, batch for batch,
and its ``state_dict`` is the streaming path's: a run can switch between the two on resume.

The difference: the cache needs every sample readable (a damaged sample stops the run at start,
naming shard and key, instead of being replaced and counted), and each rank holds the whole set.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from gandist.config import DataConfig
from gandist.data.dataset import DatasetInfo, read_all
from gandist.data.stream import _AUGMENT, _CHUNK, ImageStream, StreamPlan, _rng, _skip, flip_mask, worker_items


def dataset_bytes(plan: StreamPlan) -> int:
    """Bytes of the decoded uint8 dataset at the plan's size and channels."""
    return plan.num_samples * plan.channels * plan.image_size * plan.image_size


def use_device_cache(data_cfg: DataConfig, plan: StreamPlan) -> bool:
    if data_cfg.device_cache:
        return True
    return data_cfg.device_cache_max_mb > 0 and dataset_bytes(plan) <= data_cfg.device_cache_max_mb * 2**20


def _index_chunks(offsets: np.ndarray, segments: Iterator[tuple[int, int, int]], size: int) -> Iterator[np.ndarray]:
    """Global sample indices of a worker's stream, ``size`` at a time (the streaming path's chunks)."""
    parts: list[np.ndarray] = []
    have = 0
    for s, a, b in segments:
        idx = np.arange(offsets[s] + a, offsets[s] + b, dtype=np.int64)
        while len(idx):
            take = min(len(idx), size - have)
            parts.append(idx[:take])
            idx = idx[take:]
            have += take
            if have == size:
                yield np.concatenate(parts)
                parts, have = [], 0
    if parts:
        yield np.concatenate(parts)


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``np.pad(mode="reflect")`` (edge not repeated), for pads smaller than ``n``."""
    i = np.abs(i)
    return np.where(i > n - 1, 2 * (n - 1) - i, i)


class DeviceCachedStream(ImageStream):
    """An :class:`ImageStream` over a dataset held on ``device`` (see the module docstring)."""

    def __init__(self, plan: StreamPlan, data_cfg: DataConfig, info: DatasetInfo, device: torch.device):
        # The loader-worker count the streaming path would use (data.num_workers=-1 resolved by the
        # plan), so the saved positions of the two paths stay interchangeable.
        super().__init__(plan, data_cfg, 0 if data_cfg.num_workers == 0 else plan.num_workers)
        images_nchw, labels = read_all(info, image_size=plan.image_size, channels=plan.channels,
                                       jpeg_decoder=plan.jpeg_decoder)
        self.device = torch.device(device)
        # Copied into canonical NCHW strides: with C = 1, numpy leaves the channel stride at 1,
        # and torch would then read the batches as channels_last (another conv algorithm).
        self.images = torch.empty(images_nchw.shape, dtype=torch.uint8, device=self.device)  # N x C x H x W
        self.images.copy_(torch.from_numpy(images_nchw))
        self.labels = torch.from_numpy(labels).to(self.device)  # N int64, -1 when unlabelled
        self.offsets = np.concatenate([[0], np.cumsum(plan.counts)]).astype(np.int64)
        self.num_bytes = self.images.numel()

    def _source(self) -> Iterator[tuple | None]:
        if self.batches_per_epoch == 0:
            raise AssertionError("empty epoch")
        # What torch's DataLoader does with the streaming workers: item i from worker i % W.
        workers = [worker_items(self.plan, self.epoch, self.batches_in_epoch, w, batches=self._worker_batches)
                   for w in range(self.plan.num_workers)]
        while True:
            for items in workers:
                yield next(items)

    def _worker_batches(self, plan: StreamPlan, epoch: int, worker: int, skip_batches: int,
                        num_batches: int | None) -> Iterator[tuple]:
        """``stream.worker_batches`` with sample indices in place of shard reads."""
        B = plan.batch_size
        C = plan.chunk_size or B
        start = skip_batches * B
        first_chunk = start // C
        segments = plan.epoch_segments(epoch, worker) if plan.mode == "epoch" else plan.resampled_segments(worker)
        segments = _skip(iter(segments), first_chunk * C)
        k = skip_batches
        if num_batches is not None and k >= num_batches:
            return
        pending: list[np.ndarray] = []
        num_pending = 0
        for ci, chunk in enumerate(_index_chunks(self.offsets, segments, C), start=first_chunk):
            if plan.chunk_size:
                chunk = chunk[_rng(plan.seed, _CHUNK, epoch, plan.rank, worker, ci, *plan.leg_key(epoch)).permutation(len(chunk))]
            if ci == first_chunk:
                chunk = chunk[start - first_chunk * C:]
            pending.append(chunk)
            num_pending += len(chunk)
            while num_pending >= B:
                flat = np.concatenate(pending) if len(pending) > 1 else pending[0]
                idx, rest = flat[:B], flat[B:]
                pending, num_pending = ([rest] if len(rest) else []), len(rest)
                x, y = self._batch(idx, epoch, worker, k)
                yield x, y, 0, []
                k += 1
                if num_batches is not None and k >= num_batches:
                    return
        if num_batches is not None and k < num_batches:
            raise AssertionError(f"worker {worker} of rank {plan.rank} ran out of samples at batch {k} of {num_batches}")

    def _batch(self, idx: np.ndarray, epoch: int, worker: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) ``idx``, with the seeded augmentation of batch ``k``
        (``stream.augment_batch_np``'s random numbers, drawn in the same order; the pixel work on
        the device)."""
        plan, dev = self.plan, self.device
        idx_dev = torch.from_numpy(idx).to(dev, non_blocking=True)
        x, y = self.images[idx_dev], self.labels[idx_dev]  # B x C x H x W (a new tensor), B
        if not (plan.random_flip or plan.random_crop_pad):
            return x, y
        rng = _rng(plan.seed, _AUGMENT, epoch, plan.rank, worker, k, *plan.leg_key(epoch))
        b, _, h, w = x.shape
        if plan.random_flip:
            flipped = torch.from_numpy(np.flatnonzero(flip_mask(rng, b))).to(dev)
            x[flipped] = x[flipped].flip(-1)
        if plan.random_crop_pad:
            p = plan.random_crop_pad
            dy = rng.integers(0, 2 * p + 1, b)
            dx = rng.integers(0, 2 * p + 1, b)
            rows = torch.from_numpy(_reflect(dy[:, None] + np.arange(h)[None] - p, h)).to(dev)  # B x H
            cols = torch.from_numpy(_reflect(dx[:, None] + np.arange(w)[None] - p, w)).to(dev)  # B x W
            batch = torch.arange(b, device=dev)[:, None, None]
            cropped_bhwc = x[batch, :, rows[:, :, None], cols[:, None, :]]
            # Into canonical BCHW strides (see __init__: ``.contiguous()`` keeps them when C = 1).
            x = torch.empty_like(x, memory_format=torch.contiguous_format).copy_(cropped_bhwc.permute(0, 3, 1, 2))
        return x, y


def build_device_cache(plan: StreamPlan, data_cfg: DataConfig, info: DatasetInfo, device,
                       log: Callable[[str], None] | None = None) -> DeviceCachedStream:
    stream = DeviceCachedStream(plan, data_cfg, info, device)
    if log is not None:
        log(f"data: device cache: {plan.num_samples} images ({stream.num_bytes / 2**20:.1f} MiB uint8) held on "
            f"{stream.device}; batches are gathered and augmented there")
    return stream
