"""The stream of one rank: its plan (``StreamPlan``) from the config and the dataset, then the
dataset held on the device (``device_cache``) when it fits and is asked for, else the shard
stream (``stream.ImageStream``). A module of its own so that the two streams, which share the
plan, never import each other."""

from __future__ import annotations

from typing import Callable

import torch

from gandist.config import DataConfig
from gandist.data.dataset import DatasetInfo
from gandist.data.device_cache import build_device_cache, use_device_cache
from gandist.data.jpeg import describe, resolve_decoder
from gandist.data.stream import ImageStream, StreamPlan
from gandist.errors import DataError


def build_stream(data_cfg: DataConfig, info: DatasetInfo, *, batch_size_per_rank: int, rank: int, world_size: int,
                 seed: int, image_size: int, channels: int, log: Callable[[str], None] | None = None,
                 device: torch.device | str | None = None) -> ImageStream:
    """The stream of one rank. ``rank``/``world_size`` come from the caller (the engine): the
    split by node is explicit, never guessed from the environment (webdataset's default
    single-node splitter raises under multi-node, and a guessed rank duplicates data).
    ``log`` receives notes for the user (the run logger prints them once, on rank zero).
    ``device``: the training device, where ``data.device_cache`` keeps the dataset (default cpu)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in 0..{world_size - 1}")
    if batch_size_per_rank < 1:
        raise ValueError(f"batch_size_per_rank must be >= 1, got {batch_size_per_rank}")
    if not info.shard_counts or len(info.shard_counts) != len(info.urls):
        raise DataError("dataset info has no per-shard sample counts (resolve it with resolve_dataset)")
    num_loader_workers = data_cfg.num_workers
    if num_loader_workers < 0:
        from gandist.runtime import default_num_workers

        num_loader_workers = default_num_workers()
    plan = StreamPlan(
        urls=list(info.urls), counts=list(info.shard_counts), sample_format=info.sample_format,
        block_size=info.block_size, num_classes=info.num_classes, mode=data_cfg.mode, seed=seed, rank=rank,
        world_size=world_size, num_workers=max(1, num_loader_workers), batch_size=batch_size_per_rank,
        chunk_size=data_cfg.shuffle_buffer, image_size=image_size or info.image_size,
        channels=channels or info.channels, random_flip=data_cfg.random_flip,
        random_crop_pad=data_cfg.random_crop_pad, jpeg_decoder=resolve_decoder(data_cfg.jpeg_decoder),
        remote=info.remote,
    )
    if info.sample_format in ("jpg", "jpeg") and log is not None:
        log(f"data: JPEG decoder: {describe(plan.jpeg_decoder)}" + (
            "" if plan.jpeg_decoder == "simplejpeg" else " (pip install 'gandist[fast-jpeg]' for simplejpeg)"))
    if plan.mode == "epoch":
        nb = plan.batches_per_rank()
        if nb == 0:
            raise DataError(
                f"data: {plan.num_samples} samples are fewer than one batch on every rank "
                f"({world_size} ranks x {batch_size_per_rank} per rank = {world_size * batch_size_per_rank}); "
                "lower train.batch_size or use more data"
            )
        dropped = plan.num_samples - nb * world_size * batch_size_per_rank
        if dropped and log is not None:
            log(
                f"data: epoch mode: {nb} batches per rank per epoch; {dropped} of {plan.num_samples} samples "
                f"({100.0 * dropped / plan.num_samples:.2f}%) are left out of each epoch (a different tail of the "
                f"shuffled order every epoch) so all {world_size} ranks run the same number of steps"
            )
    if use_device_cache(data_cfg, plan):
        return build_device_cache(plan, data_cfg, info, device or "cpu", log=log)
    return ImageStream(plan, data_cfg, num_loader_workers)
