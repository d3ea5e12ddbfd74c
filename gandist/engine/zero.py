"""The ``zero`` engine: one DeepSpeed ZeRO engine per network (stage 1 or 2).

Why not Accelerate's DeepSpeed plugin: it refuses two models, drives only the last engine from
``accelerator.backward`` and needs ``transformers`` for its multi-model API (docs/library_notes.md, note 1).
So Accelerate launches and owns the process group, and each of G and D gets its own
``deepspeed.initialize(model=..., optimizer=..., config=...)``, which reuses that group.

Accumulation: the engines run with ``managed_gradient_accumulation=false``, so ``backward`` only
accumulates (scaled by 1/accumulation steps) and ``step`` is the boundary that reduces, clips and
updates. That is exactly the contract of ``Engine.backward``/``Engine.step``.

Precision: under bf16/fp16 DeepSpeed keeps the module's weights in the half type and the fp32
master weights (sharded) in its optimizer. ``_HalfIO`` casts floating inputs to the weights'
type and outputs back to fp32, so the loop feeds fp32 tensors and computes fp32 losses under
both engines. ``full_state`` returns the fp32 master weights gathered from all ranks.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gandist.config import Config
from gandist.engine.base import Engine, NetName, iterate_nets
from gandist.engine.launch import launch_env
from gandist.engine.process_group import default_device
from gandist.engine.safe_load import weights_only_loads
from gandist.errors import CheckpointError, ConfigError

#: Tag of the DeepSpeed checkpoint inside each network's folder. Explicit on save and load:
#: two engines sharing a folder would overwrite each other's ``latest`` (docs/library_notes.md, note 10).
CHECKPOINT_TAG = "zero"
#: Written by rank zero next to the network folders; says which world size wrote the shards.
META_FILE = "zero_meta.json"


def ensure_process_group(timeout_minutes: float) -> bool:
    """Make sure a torch.distributed group exists before DeepSpeed looks for one; True when this
    call made it (the caller then ends it with ``end_process_group``).

    Launched runs (torchrun / accelerate launch with several processes) already have one, made by
    Accelerate from the launcher's environment. A one-process run has none, and DeepSpeed would
    then try MPI discovery and fail on ``mpi4py`` (docs/library_notes.md, note 11): give it a one-process group.
    """
    if dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if launch_env().has_rendezvous:
        dist.init_process_group(backend, timeout=timeout)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        # DeepSpeed asserts LOCAL_RANK is set (a launcher's variable) even for one process.
        os.environ.setdefault("LOCAL_RANK", "0")
    return True


def end_process_group() -> None:
    """Destroy the process group: gloo aborts the process at exit when one is left open
    (docs/library_notes.md, note 5)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def deep_update(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s keys replacing it, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def deepspeed_config(cfg: Config, world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON for one network, generated from gandist's config, then the user's file over it."""
    precision = cfg.train.mixed_precision
    zero: dict[str, Any] = {
        "stage": cfg.engine.zero_stage,
        "contiguous_gradients": True,
        "overlap_comm": False,
    }
    if cfg.engine.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    generated: dict[str, Any] = {
        "train_batch_size": cfg.train.batch_size,
        "train_micro_batch_size_per_gpu": cfg.train.batch_size_per_rank(world_size),
        "gradient_accumulation_steps": cfg.train.grad_accum,
        # backward() accumulates, step() is the boundary: the Engine contract (see module doc).
        "managed_gradient_accumulation": False,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16": {"enabled": precision == "bf16"},
        # loss_scale 0: dynamic loss scaling, starting at 2**initial_scale_power.
        "fp16": {
            "enabled": precision == "fp16",
            "loss_scale": 0,
            "initial_scale_power": 16,
            "loss_scale_window": 1000,
            "hysteresis": 2,
            "min_loss_scale": 1,
        },
        "zero_optimization": zero,
        # gandist builds torch.optim.Adam itself; DeepSpeed calls that "untested" but shards it fine.
        "zero_allow_untested_optimizer": True,
        # With offload, run the client's torch Adam on the CPU copy instead of demanding DeepSpeedCPUAdam.
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if precision != "no":
        # DeepSpeed casts parameters only; BatchNorm's fp32 running statistics would then meet
        # half-precision weights and inputs ("expected scalar type BFloat16 but found Float").
        generated["data_types"] = {"buffer_dtype": precision}
    if cfg.engine.deepspeed_config:
        path = Path(cfg.engine.deepspeed_config)
        try:
            user = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"engine.deepspeed_config: cannot read {path} as JSON: {e}") from None
        if not isinstance(user, dict):
            raise ConfigError(f"engine.deepspeed_config: {path} must hold a JSON object, got {type(user).__name__}")
        generated = deep_update(generated, user)
    return generated


class _HalfIO(nn.Module):
    """Casts floating inputs to the wrapped network's weight type, and its output back to fp32."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        dtype = next(self.module.parameters()).dtype
        args = tuple(_cast(a, dtype) for a in args)
        kwargs = {k: _cast(v, dtype) for k, v in kwargs.items()}
        return _cast(self.module(*args, **kwargs), torch.float32)


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
        return value.to(dtype)
    return value


class ZeroEngine(Engine):
    """DeepSpeed ZeRO-1/2 for G and D, one DeepSpeed engine each."""

    def __init__(self, cfg: Config, accelerator: Any = None, run_dir: Path | str | None = None):
        """``accelerator``: the launcher's Accelerator (device, process group); None: derive both here.
        ``run_dir``: where the generated DeepSpeed JSON is written (rank zero); None: not written."""
        if cfg.engine.zero_stage not in (1, 2):
            raise ConfigError(f"engine.zero_stage: must be one of 1, 2 (got {cfg.engine.zero_stage})")
        ensure_process_group(cfg.engine.timeout_minutes)
        if accelerator is not None and not (accelerator.device.type == "cuda" and accelerator.device.index is None):
            device = accelerator.device
            if device.type == "cuda":
                torch.cuda.set_device(device)
        else:
            device = default_device()  # indexed by the local rank (DeepSpeed needs an index)
        self.cfg = cfg
        self._attach(dist.get_rank(), dist.get_world_size(), device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.ds_config = deepspeed_config(cfg, self.world_size)
        self._engines: dict[str, Any] = {}
        self._modules: dict[str, nn.Module] = {}

    # Setup ------------------------------------------------------------------------------------
    def prepare(self, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> None:
        import deepspeed

        if self.cfg.train.mixed_precision == "fp16":
            from deepspeed.accelerator import get_accelerator

            if not get_accelerator().is_fp16_supported():
                raise ConfigError(
                    f"train.mixed_precision: fp16 is not supported by DeepSpeed on this device "
                    f"({get_accelerator().device_name()}); use bf16 or engine.kind=ddp"
                )
        for name in iterate_nets():
            if self.run_dir is not None and self.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                (self.run_dir / f"deepspeed_{name}.json").write_text(json.dumps(self.ds_config, indent=2) + "\n")
            module = nets[name]
            ds_engine, _, _, _ = deepspeed.initialize(
                model=_HalfIO(module),
                optimizer=optimizers[name],
                config=copy.deepcopy(self.ds_config),
            )
            self._engines[name] = ds_engine
            self._modules[name] = module

    def net(self, name: NetName) -> nn.Module:
        return self._engines[name]

    def unwrap(self, name: NetName) -> nn.Module:
        return self._modules[name]

    def _frozen_callable(self, name: NetName) -> nn.Module:
        # The precision wrapper without the DeepSpeed engine: a frozen network takes no step,
        # so its forward needs none of the engine's bookkeeping.
        return self._engines[name].module

    def penalty_net(self, name: NetName) -> nn.Module:
        # The precision wrapper without the DeepSpeed engine: the engine hooks the outputs of its
        # forward to run its backward prologue/epilogue, and an autograd.grad through them ran
        # the epilogue early and broke ZeRO-2's gradient buckets ("IndexError" in reduce_ipg_grads).
        # The parameters are the same, so the penalty's gradients join the engine's backward.
        return self._engines[name].module

    # One optimisation step ----------------------------------------------------------------------
    def backward(self, loss: torch.Tensor, name: NetName) -> None:
        self._engines[name].backward(loss)

    def step(self, name: NetName) -> None:
        self._engines[name].step()

    def lr(self, name: NetName) -> float:
        return float(self._engines[name].optimizer.param_groups[0]["lr"])

    def set_lr(self, name: NetName, lr: float) -> None:
        for group in self._engines[name].optimizer.param_groups:
            group["lr"] = lr

    def skipped_steps(self, name: NetName) -> int:
        """Optimizer steps DeepSpeed skipped because fp16 gradients overflowed."""
        return int(self._engines[name].skipped_steps)

    def optimizer_state_numel(self, name: NetName) -> int:
        """Elements of optimizer state this rank holds for ``name`` (Adam moments of its partition)."""
        inner = self._engines[name].optimizer.optimizer  # the client torch optimizer, over this rank's partition
        return sum(t.numel() for state in inner.state.values() for t in state.values() if torch.is_tensor(t) and t.dim() > 0)

    def optimizer_state_bytes(self, name: NetName) -> int:
        """Bytes of optimizer state on this rank: Adam moments plus the fp32 master partition.

        The partition is counted in every precision: ZeRO-1/2 always step on flat fp32 copies of
        this rank's share of the weights, besides the module's own weights.
        """
        inner = self._engines[name].optimizer.optimizer
        moments = sum(t.numel() * t.element_size() for state in inner.state.values() for t in state.values()
                      if torch.is_tensor(t) and t.dim() > 0)
        master = sum(p.numel() * p.element_size() for group in inner.param_groups for p in group["params"])
        return moments + master

    # State ------------------------------------------------------------------------------------
    def full_state(self) -> dict[str, Any]:
        """fp32 G/D weights gathered from every rank's master partition (a collective: call on every rank).

        Optimizer state stays sharded: ``save_sharded`` writes it.
        """
        from deepspeed.utils import safe_get_full_fp32_param

        state: dict[str, Any] = {"opt_G": None, "opt_D": None, "scaler": None}
        for name in iterate_nets():
            module = self._modules[name]
            weights: dict[str, torch.Tensor] = {}
            for key, param in module.named_parameters():
                full = safe_get_full_fp32_param(param)
                weights[key] = (full if full is not None else param.detach().float()).cpu().clone()
            for key, buf in module.named_buffers():
                weights[key] = (buf.float() if buf.is_floating_point() else buf).detach().cpu().clone()
            # Keep the module's own key order so the state_dict loads into a plain network.
            state[name] = {k: weights[k] for k in module.state_dict()}
        return state

    def load_full_state(self, state: dict[str, Any]) -> None:
        """Load full fp32 weights into both the module (its half copy) and DeepSpeed's fp32 masters."""
        from deepspeed.utils import safe_set_full_fp32_param

        for name in iterate_nets():
            module = self._modules[name]
            weights = state[name]
            missing = set(module.state_dict()) ^ set(weights)
            if missing:
                raise CheckpointError(f"checkpoint: {name} weights do not match the model (keys: {sorted(missing)[:5]})")
            with torch.no_grad():
                for key, param in module.named_parameters():
                    value = weights[key].to(self.device, torch.float32)
                    param.copy_(value)
                    safe_set_full_fp32_param(param, value)
                for key, buf in module.named_buffers():
                    buf.copy_(weights[key])

    def save_sharded(self, directory: Path) -> None:
        """Every rank writes its optimizer partition: ``directory/G/zero/...``, ``directory/D/zero/...``."""
        directory = Path(directory)
        for name in iterate_nets():
            self._engines[name].save_checkpoint(
                str(directory / name),
                tag=CHECKPOINT_TAG,
                # universal_checkpoint_info: ds_to_universal refuses checkpoints without it (docs/library_notes.md, note 10).
                client_state={"universal_checkpoint_info": {}, "world_size": self.world_size},
            )
        if self.is_main:
            meta = {"world_size": self.world_size, "zero_stage": self.cfg.engine.zero_stage,
                    "mixed_precision": self.cfg.train.mixed_precision, "tag": CHECKPOINT_TAG}
            (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        self.barrier()

    def load_sharded(self, directory: Path) -> None:
        """Load what ``save_sharded`` wrote. Another world size goes through DeepSpeed's universal
        checkpoint (converted once, next to the shards, then loaded on every rank: docs/library_notes.md, note 10)."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise CheckpointError(f"checkpoint: {directory} holds no ZeRO state ({META_FILE} missing); was it saved with engine.kind=zero?")
        meta = _read_meta(meta_path)
        if meta["zero_stage"] != self.cfg.engine.zero_stage:
            raise CheckpointError(
                f"checkpoint: {directory} was saved with engine.zero_stage={meta['zero_stage']}, "
                f"this run has {self.cfg.engine.zero_stage}"
            )
        universal = meta["world_size"] != self.world_size
        source = self._universal_copy(directory, meta["world_size"]) if universal else directory
        error = ""
        for name in iterate_nets():
            engine = self._engines[name]
            # DeepSpeed reads this flag inside load_checkpoint; set only for this one load.
            engine._config.load_universal_checkpoint = universal
            try:
                # DeepSpeed unpickles its files in full; a checkpoint is data, never code.
                with weights_only_loads():
                    path, _ = engine.load_checkpoint(str(source / name), tag=CHECKPOINT_TAG)
            except Exception as e:  # noqa: BLE001 - every rank must reach the agreement below
                error = (f"checkpoint: cannot load the DeepSpeed state of {name} from {source / name} "
                         f"(only tensors and plain data are loaded from checkpoints): {type(e).__name__}: {str(e)[:500]}")
                break
            finally:
                engine._config.load_universal_checkpoint = False
            if path is None:
                error = f"checkpoint: no DeepSpeed state for {name} in {source / name}"
                break
        # One rank's damaged partition must stop every rank, not leave the others in a collective.
        if not self.all_agree(not error):
            raise CheckpointError(error or f"checkpoint: another rank could not load the DeepSpeed state in {source}")

    def _universal_copy(self, directory: Path, saved_world_size: int) -> Path:
        """``directory`` converted to DeepSpeed's universal format (rank zero converts, all wait)."""
        out = directory.with_name(directory.name + ".universal")
        error = ""
        if self.is_main and not (out / "DONE").is_file():
            tmp = directory.with_name(directory.name + ".universal.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            for name in iterate_nets():
                # Our wrapper of deepspeed.checkpoint.ds_to_universal: the same conversion, with weights-only loads.
                cmd = [sys.executable, "-m", "gandist.engine.ds_universal",
                       "--input_folder", str(directory / name / CHECKPOINT_TAG),
                       "--output_folder", str(tmp / name / CHECKPOINT_TAG),
                       "--num_extract_workers", "1", "--num_merge_workers", "1"]
                env = dict(os.environ)
                env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    error = (f"checkpoint: {directory} was saved by {saved_world_size} processes and this run has "
                             f"{self.world_size}; converting its ZeRO shards to a universal checkpoint failed "
                             f"({' '.join(cmd)}):\n{proc.stderr[-2000:]}\nResume with {saved_world_size} processes instead.")
                    break
            if not error:
                (tmp / "DONE").write_text(f"converted from world size {saved_world_size}\n")
                shutil.rmtree(out, ignore_errors=True)
                os.replace(tmp, out)
        if not self.all_agree(not error):
            raise CheckpointError(error or f"checkpoint: converting {directory} to a universal checkpoint failed on rank 0")
        return out

    # Teardown ---------------------------------------------------------------------------------
    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _read_meta(path: Path) -> dict[str, Any]:
    """``zero_meta.json``, checked: world_size and zero_stage are positive integers."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint: cannot read {path}: {e}") from None
    if not isinstance(meta, dict) or not all(
            isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool) and meta[k] > 0
            for k in ("world_size", "zero_stage")):
        raise CheckpointError(f"checkpoint: {path} must be a JSON object with positive integers world_size and zero_stage")
    return meta
