"""The whole training state as one object: what a checkpoint holds and a resume restores.

``TrainingState`` gathers the models and optimizers (through the engine), the EMA generator, the
step counter, every RNG, the data stream's position and any stateful training component (the
adaptive-augmentation controller, regularizer anchors ...), and maps them onto the checkpoint
files that ``gandist.checkpoint.Checkpointer`` writes atomically::

    model.pt      {"G", "D", "G_ema"}                                  rank 0
    optim.pt      {"opt_G", "opt_D", "scaler"}                         rank 0
    trainer.pt    step, total_steps, world_size, lr, data position of
                  rank 0, "components" (name -> state_dict)            rank 0
    rank/N.pt     {"rng", "data"} of rank N                             every rank
    sharded/      the engine's own per-rank state (ZeRO partitions)    every rank
    config.yaml, model.json

Only tensors and plain data: everything loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from gandist.checkpoint import Checkpointer, load_tensor_file, save_tensor_file
from gandist.engine import Engine
from gandist.errors import CheckpointError


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainingState:
    engine: Engine
    ema: torch.nn.Module
    stream: Any  # gandist.data.ImageStream
    model_info: dict[str, Any]
    """Model name, ModelSpec and class names: written as model.json so a generator loads without the config."""
    config_yaml: str
    """The resolved config, written beside the state."""
    total_steps: int
    step: int = 0
    components: dict[str, Stateful] = field(default_factory=dict)
    """Other stateful parts of training, saved in trainer.pt under their names."""

    # The state as data -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The full state for rank zero's files. A collective under zero: call on every rank."""
        engine = self.engine
        full = engine.full_state()
        return {
            "model": {"G": full["G"], "D": full["D"], "G_ema": self.ema.state_dict()},
            "optim": {"opt_G": full["opt_G"], "opt_D": full["opt_D"], "scaler": full["scaler"]},
            "trainer": {"step": self.step, "total_steps": self.total_steps, "world_size": engine.world_size,
                        "lr": {"G": engine.lr("G"), "D": engine.lr("D")}, "data": self.stream.state_dict(),
                        "components": {name: c.state_dict() for name, c in self.components.items()}},
        }

    def rank_state_dict(self) -> dict[str, Any]:
        """What differs between ranks: RNG states and the data stream's position."""
        return {"rng": rng_state(), "data": self.stream.state_dict()}

    def load_state_dict(self, state: dict[str, Any], rank_state: dict[str, Any] | None, log: Callable[[str], None]) -> None:
        """Inverse of ``state_dict`` (+ ``rank_state_dict`` when this rank's file is usable)."""
        engine, trainer = self.engine, state["trainer"]
        engine.load_full_state({**state["model"], **state["optim"]})
        self.ema.load_state_dict(state["model"]["G_ema"])
        self.step = int(trainer["step"])
        for name, component in self.components.items():
            saved = trainer.get("components", {}).get(name)
            if saved is not None:  # absent in checkpoints older than the component: keep its fresh state
                component.load_state_dict(saved)
        if rank_state is not None and self.stream.same_shape(rank_state["data"]):
            set_rng_state(rank_state["rng"])
            self.stream.load_state_dict(rank_state["data"])
        elif rank_state is not None:  # same ranks, another batch per rank or data.num_workers
            set_rng_state(rank_state["rng"])
            self.stream.continue_from(rank_state["data"])
            log(f"the data stream continues in epoch {self.stream.epoch} with the samples the saved run had not read "
                f"(saved with {rank_state['data']['batch_size_per_rank']} per rank and "
                f"{rank_state['data']['num_workers']} loader workers)")
        else:
            # Another world size: the ranks split what the saved run had not read of its epoch
            # (rank 0's position stands for all: ranks run in lockstep); the global batch, hence
            # the steps per epoch, is unchanged.
            self.stream.continue_from(trainer["data"])
            left = self.stream.plan.batches_per_rank(self.stream.epoch) if self.stream.batches_per_epoch else None
            log(
                f"resuming a checkpoint of {trainer['world_size']} process(es) on {engine.world_size}: the global batch is "
                f"kept ({engine.batch_size_per_rank} per rank); the data stream continues in epoch {self.stream.epoch}"
                + (f" with the {left} steps of samples not read yet (each sample of the epoch still read once)"
                   if left is not None else "")
            )

    # The state as files ------------------------------------------------------------------------
    def save(self, checkpointer: Checkpointer) -> Path:
        """Write a checkpoint of this step (every rank calls it); returns its folder."""
        state = self.state_dict()
        engine = self.engine

        def write_main(tmp: Path) -> None:
            for name in ("model", "optim", "trainer"):
                save_tensor_file(state[name], tmp / f"{name}.pt")
            (tmp / "config.yaml").write_text(self.config_yaml)
            (tmp / "model.json").write_text(json.dumps(self.model_info, indent=1))

        def write_rank(tmp: Path) -> None:
            engine.save_sharded(tmp / "sharded")
            save_tensor_file(self.rank_state_dict(), tmp / "rank" / f"{engine.rank:05d}.pt")

        return checkpointer.save(self.step, write_main, write_rank)

    def load(self, path: Path, log: Callable[[str], None]) -> None:
        """Restore everything ``save`` wrote into ``path`` (every rank calls it)."""
        engine = self.engine
        error = None
        try:
            state = {name: load_tensor_file(path / f"{name}.pt") for name in ("model", "optim", "trainer")}
            rank_file = path / "rank" / f"{engine.rank:05d}.pt"
            same_world = state["trainer"]["world_size"] == engine.world_size
            rank_state = load_tensor_file(rank_file) if same_world and rank_file.exists() else None
        except CheckpointError as e:
            error = e
        except (KeyError, TypeError) as e:  # verified bytes, but not the structure this gandist wrote
            error = CheckpointError(f"checkpoint {path}: trainer.pt lacks {e}")
        # A file only one rank reads (rank/N.pt) must stop every rank, not leave the others in a collective.
        if not engine.all_agree(error is None):
            raise error or CheckpointError(f"checkpoint {path}: another rank could not load its files")
        engine.load_sharded(path / "sharded")
        try:
            self.load_state_dict(state, rank_state, log)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
            raise CheckpointError(f"checkpoint {path} does not hold the state this run needs: {type(e).__name__}: {str(e)[:300]}") from None


# RNG state as plain data -----------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain data (loadable with weights_only)."""
    version, py_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
