"""The ``ddp`` engine: Accelerate prepares G, D and their optimizers (DDP across ranks,
device placement, autocast and, for fp16, a gradient scaler).

One Accelerate GradScaler serves both networks: each ``step`` unscales only its own
optimizer and ``scaler.update()`` runs after every optimizer step, which is what
``torch.amp`` documents for several optimizers sharing one scaler.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator

from gandist.config import Config
from gandist.engine.base import Engine, NetName


class DDPEngine(Engine):
    def __init__(self, cfg: Config, accelerator: Accelerator):
        self.cfg = cfg
        self._attach(accelerator.process_index, accelerator.num_processes, accelerator.device)
        self.accelerator = accelerator
        self._nets: dict[str, torch.nn.Module] = {}
        self._optimizers: dict[str, Any] = {}
        # Losses are divided here rather than by Accelerate's accumulation plugin so that
        # the loop keeps control of when gradients sync (no_sync) and when steps happen.
        self._loss_scale = 1.0 / cfg.train.grad_accum
        self._autocast_dtype = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[accelerator.mixed_precision]

    def prepare(self, nets, optimizers) -> None:
        if self.world_size == 1:
            # One process: Accelerate wraps a model in DDP whenever a process group exists (a
            # one-process torchrun or accelerate launch, gandist bench's group for DeepSpeed), and
            # a one-rank DDP only copies gradients into buckets, all-reduces them with itself and
            # broadcasts BatchNorm buffers every forward: 4 % of a 32 px dcgan step on a CPU
            # (benchmarks/results). The models just move to the device.
            g, d = nets["G"].to(self.device), nets["D"].to(self.device)
            opt_g, opt_d = self.accelerator.prepare(optimizers["G"], optimizers["D"])
        else:
            g, d, opt_g, opt_d = self.accelerator.prepare(nets["G"], nets["D"], optimizers["G"], optimizers["D"])
        self._nets = {"G": g, "D": d}
        # keep_fp32_wrapper=False takes Accelerate's per-forward autocast and fp32 output
        # conversion off the modules: the loop's own autocast() already covers every forward.
        self._modules = {name: self.accelerator.unwrap_model(net, keep_fp32_wrapper=False) for name, net in self._nets.items()}
        # The torch optimizers under Accelerate's wrappers: AcceleratedOptimizer.step looks up
        # package metadata (an optional LOMO optimizer) on every call, ~10 ms per step; the
        # loop steps them directly, with Accelerate's grad scaler when fp16 has one.
        self._optimizers = {"G": opt_g.optimizer, "D": opt_d.optimizer}

    def net(self, name: NetName) -> torch.nn.Module:
        return self._nets[name]

    def unwrap(self, name: NetName) -> torch.nn.Module:
        return self._modules[name]

    def _frozen_callable(self, name: NetName) -> torch.nn.Module:
        # The plain module: a frozen network needs no DDP gradient sync, and a DDP forward
        # would prepare a reducer for a backward that never reaches it.
        return self.unwrap(name)

    def autocast(self):
        # torch.autocast directly, with the dtype the Accelerator was configured with: the
        # Accelerator's context manager costs measurable Python time three times per step.
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._autocast_dtype)

    def no_sync(self, name: NetName):
        if self.world_size == 1:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(self._nets[name])

    def backward(self, loss: torch.Tensor, name: NetName) -> None:
        if self._loss_scale != 1.0:
            loss = loss * self._loss_scale
        scaler = self.accelerator.scaler  # fp16 only: Accelerate made it from train.mixed_precision
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self, name: NetName) -> None:
        optimizer = self._optimizers[name]
        scaler = self.accelerator.scaler
        if self.cfg.optim.grad_clip > 0:
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self._modules[name].parameters(), self.cfg.optim.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def lr(self, name: NetName) -> float:
        return self._optimizers[name].param_groups[0]["lr"]

    def set_lr(self, name: NetName, lr: float) -> None:
        for group in self._optimizers[name].param_groups:
            group["lr"] = lr

    # State ------------------------------------------------------------------------------------
    def full_state(self) -> dict[str, Any]:
        scaler = self.accelerator.scaler
        return {
            "G": self.unwrap("G").state_dict(),
            "D": self.unwrap("D").state_dict(),
            "opt_G": self._optimizers["G"].state_dict(),
            "opt_D": self._optimizers["D"].state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        }

    def load_full_state(self, state: dict[str, Any]) -> None:
        self.unwrap("G").load_state_dict(state["G"])
        self.unwrap("D").load_state_dict(state["D"])
        for name in ("G", "D"):
            opt_state = state.get(f"opt_{name}")
            if opt_state is not None:
                self._optimizers[name].load_state_dict(opt_state)
        if state.get("scaler") is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])

    def close(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
