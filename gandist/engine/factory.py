"""Build the engine ``engine.kind`` names, on the Accelerator that owns launch and device."""

from __future__ import annotations

import datetime
from pathlib import Path

import torch

from gandist.config import Config
from gandist.engine.base import Engine
from gandist.engine.launch import launch_env


def make_accelerator(cfg: Config):
    """The Accelerator that owns launch, process group, device and autocast for both engines."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    use_cuda = torch.cuda.is_available()
    timeout = datetime.timedelta(minutes=cfg.engine.timeout_minutes)
    pg_kwargs = InitProcessGroupKwargs(backend="nccl" if use_cuda else "gloo", timeout=timeout)
    # Accelerator(cpu=True) without CUDA gives a gloo group with correct ranks under torchrun
    # (multi-CPU configs would expect MPI instead).
    mixed = cfg.train.mixed_precision if cfg.engine.kind == "ddp" else "no"
    # Only a launched multi-process run gets a process group: with a backend named, Accelerate
    # would otherwise try to use a group that a single plain process never creates.
    handlers = [pg_kwargs] if launch_env().world_size > 1 else []
    return Accelerator(cpu=not use_cuda, mixed_precision=mixed, kwargs_handlers=handlers)


def build_engine(cfg: Config, run_dir: Path) -> Engine:
    """The engine ``engine.kind`` names; ``run_dir`` receives backend files (DeepSpeed JSON)."""
    accelerator = make_accelerator(cfg)
    if cfg.engine.kind == "ddp":
        from gandist.engine.ddp import DDPEngine

        return DDPEngine(cfg, accelerator)
    from gandist.engine.zero import ZeroEngine

    return ZeroEngine(cfg, accelerator, run_dir)
