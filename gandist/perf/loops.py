"""The two loops ``gandist bench`` and ``benchmarks/train_step.py`` time against each other.

``plain_loop``: what a user writes without gandist: the same G and D, Adam, the non-saturating
loss, D frozen in the G step, an EMA of G, one ``.item()`` check per step; the modules and
optimizers called directly. ``gandist_loop``: gandist's own ``train_step`` (and the loop's
per-step stop check) through a real engine. Both take their batches already on the device unless
given a stream.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from gandist.models import ModelSpec, build_models

DTYPES = {"no": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Loop:
    """One timed training loop: ``step()`` runs one D and one G update."""

    step: Callable[[], None]
    g: torch.nn.Module
    d: torch.nn.Module
    optimizers: list[Any]
    notes: list[str] = field(default_factory=list)
    opt_bytes: Callable[[], int] | None = None  # optimizer state on this rank, when ``optimizers`` cannot tell (ZeRO)

    def state_bytes(self) -> int:
        """Bytes of parameters, buffers and optimizer state this loop holds on this rank."""
        tensors = [*self.g.parameters(), *self.g.buffers(), *self.d.parameters(), *self.d.buffers()]
        total = sum(t.numel() * t.element_size() for t in tensors)
        if self.opt_bytes is not None:
            return total + self.opt_bytes()
        for opt in self.optimizers:
            for s in opt.state.values():
                total += sum(t.numel() * t.element_size() for t in s.values() if torch.is_tensor(t) and t.dim() > 0)
        return total


def synthetic_batch(batch: int, spec: ModelSpec, device: torch.device | str, seed: int = 0):
    """One uint8 image batch and its labels, on ``device`` (the in-memory reference input)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, spec.channels, spec.image_size, spec.image_size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, max(spec.num_classes, 1), (batch,), generator=gen)
    return images.to(device), labels.to(device)


def _adam(params, fused: bool):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999), **({"fused": True} if fused else {}))


def plain_loop(model: str, spec: ModelSpec, images: torch.Tensor, labels: torch.Tensor, device: torch.device | str,
               precision: str = "no", channels_last: bool = False, fused_adam: bool = False) -> Loop:
    from gandist.losses import get_loss

    device = torch.device(device)
    torch.manual_seed(0)
    g, d = build_models(model, spec)
    g, d = g.to(device), d.to(device)
    if channels_last:
        g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(g).eval().requires_grad_(False)
    opt_g, opt_d = _adam(g.parameters(), fused_adam), _adam(d.parameters(), fused_adam)
    loss_fn = get_loss("nonsaturating")
    y_real = labels if spec.num_classes else None
    dtype = DTYPES[precision]

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def step():
        real = images.float() / 127.5 - 1  # batches arrive as uint8 in both loops
        z = torch.randn(real.shape[0], spec.z_dim, device=device)
        y = torch.randint(0, spec.num_classes, (real.shape[0],), device=device) if spec.num_classes else None
        with autocast():
            with torch.no_grad():
                fake = g(z, y)
            loss = loss_fn.d_loss(d(real, y_real).float(), d(fake, y).float())
        loss.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        d.requires_grad_(False)
        with autocast():
            loss_g = loss_fn.g_loss(d(g(z, y), y).float())
        loss_g.backward()
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        d.requires_grad_(True)
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(g.parameters()), 0.001)
            torch._foreach_copy_(list(ema.buffers()), list(g.buffers()))
        torch.isfinite(loss).item()

    return Loop(step=step, g=g, d=d, optimizers=[opt_g, opt_d])


def gandist_loop(model: str, spec: ModelSpec, batch: int, engine_kind: str, precision: str, run_dir: Path,
                 accelerator, *, batches: Iterator | None = None, images: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None, channels_last: bool = False, fused_adam: bool = False,
                 compile: bool = False) -> Loop:
    """gandist's ``train_step`` through a ``ddp`` or ``zero1``/``zero2`` engine on ``accelerator``'s device.

    ``batches``: an iterator of (uint8 images, labels), e.g. a data stream; else the one in-memory
    batch ``images``/``labels`` repeated.
    """
    from gandist.config import load_config
    from gandist.engine.ddp import DDPEngine
    from gandist.engine.zero import ZeroEngine
    from gandist.latents import LatentSampler
    from gandist.gan_objective import GanObjective
    from gandist.train import Run, stop_flags, train_step
    from gandist.training_state import TrainingState

    kind = {"ddp": ["engine.kind=ddp"], "zero1": ["engine.kind=zero", "engine.zero_stage=1"],
            "zero2": ["engine.kind=zero", "engine.zero_stage=2"]}[engine_kind]
    cfg = load_config(None, [*kind, f"train.batch_size={batch}", f"train.mixed_precision={precision}",
                             "log.progress=false", f"model.name={model}"]).validate()
    if engine_kind == "ddp":
        engine = DDPEngine(cfg, accelerator)
        # Accelerate's state is process-wide, so one Accelerator (made with mixed_precision "no")
        # serves every engine of the run; bf16 needs no grad scaler, only this autocast dtype,
        # which is what a DDPEngine built on a bf16 Accelerator sets.
        engine._autocast_dtype = DTYPES[precision]
    else:
        engine = ZeroEngine(cfg, accelerator, None)
    torch.manual_seed(0)
    g, d = build_models(model, spec)
    notes = []
    if channels_last:
        g, d = g.to(engine.device, memory_format=torch.channels_last), d.to(engine.device, memory_format=torch.channels_last)
    ema = copy.deepcopy(g).eval().requires_grad_(False)
    opts = {"G": _adam(g.parameters(), fused_adam and engine_kind == "ddp"),
            "D": _adam(d.parameters(), fused_adam and engine_kind == "ddp")}
    if compile:
        # Compiled forwards; the engine wraps the compiled modules (parameters are shared).
        g_run, d_run = torch.compile(g), torch.compile(d)
        engine.prepare({"G": g_run, "D": d_run}, opts)
        notes.append("torch.compile")
    else:
        engine.prepare({"G": g, "D": d}, opts)
    ema.to(engine.device)
    if batches is None:
        batches = itertools.cycle([(images, labels)])
    state = TrainingState(engine=engine, ema=ema, stream=None, model_info={}, config_yaml="", total_steps=10**9)
    run = Run(cfg=cfg, run_dir=run_dir, engine=engine, spec=spec, state=state, batches=batches, logger=None,
              checkpointer=None, latents=LatentSampler(engine, spec.z_dim, spec.num_classes, cfg.train.seed),
              objective=GanObjective(cfg, engine))  # the default loss (nonsaturating), no augmentation or penalty

    def step():
        stats = train_step(run)
        stop_flags(run, stats)  # the loop's per-step finite/preemption check (one all-reduce + sync)

    if engine_kind == "ddp":
        return Loop(step=step, g=engine.unwrap("G"), d=engine.unwrap("D"), optimizers=list(opts.values()), notes=notes)
    return Loop(step=step, g=engine.unwrap("G"), d=engine.unwrap("D"), optimizers=[], notes=notes,
                opt_bytes=lambda: engine.optimizer_state_bytes("G") + engine.optimizer_state_bytes("D"))
