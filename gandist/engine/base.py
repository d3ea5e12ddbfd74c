"""The one interface the training loop uses to talk to a distributed backend.

Only engines know about ranks, process groups, DDP and DeepSpeed. The loop sees two networks
by name, "G" and "D", and calls ``backward(loss, name)`` / ``step(name)`` on them.
"""

from __future__ import annotations

import abc
import contextlib
from pathlib import Path
from typing import Any, Iterator, Literal

import torch

from gandist.engine.process_group import ProcessGroup

NetName = Literal["G", "D"]


class Engine(ProcessGroup, abc.ABC):
    """A distributed backend driving the generator "G" and the discriminator "D".

    Its ranks, device and collectives (``reduce_mean``, ``gather``, ``barrier`` ...) are those of
    ``ProcessGroup``; subclasses set ``cfg`` and then call ``_attach`` with what their backend reports.
    """

    cfg: Any  # gandist.config.Config
    #: Images in one micro-batch on this rank: ``train.batch_size`` split over ranks and accumulation.
    batch_size_per_rank: int

    def _attach(self, rank: int, world_size: int, device: torch.device, owns_group: bool = False) -> None:
        self.timeout_minutes = self.cfg.engine.timeout_minutes
        super()._attach(rank, world_size, device, owns_group)
        self.batch_size_per_rank = self.cfg.train.batch_size_per_rank(world_size)

    # Setup ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self, nets: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Wrap G and D and their optimizers for this backend (DDP, DeepSpeed engines, ...)."""

    @abc.abstractmethod
    def net(self, name: NetName) -> torch.nn.Module:
        """The wrapped network to call for forward passes."""

    @abc.abstractmethod
    def unwrap(self, name: NetName) -> torch.nn.Module:
        """The plain ``nn.Module`` under any wrapper (for EMA, sampling, export)."""

    # One optimisation step ----------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for forward passes under the configured mixed precision."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def backward(self, loss: torch.Tensor, name: NetName) -> None:
        """Backpropagate ``loss`` into ``name``'s gradients (scaled for fp16, divided for accumulation)."""

    @abc.abstractmethod
    def step(self, name: NetName) -> None:
        """Unscale, clip, apply the optimizer step and zero the gradients of ``name``."""

    @contextlib.contextmanager
    def frozen(self, name: NetName) -> Iterator[torch.nn.Module]:
        """``name`` with ``requires_grad`` off for the duration, yielded as the module to call.

        The G step runs through a frozen D: no wasted D gradients, and under ZeRO-2 a G loss
        that reached D's parameters would fire D's gradient hooks and fail (DeepSpeed issue 4923).
        """
        params = [p for p in self.unwrap(name).parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            yield self._frozen_callable(name)
        finally:
            for p in params:
                p.requires_grad_(True)

    def _frozen_callable(self, name: NetName) -> torch.nn.Module:
        return self.net(name)

    def penalty_net(self, name: NetName) -> torch.nn.Module:
        """The network to call for a forward whose input gradient a penalty takes with
        ``torch.autograd.grad(create_graph=True)``; its parameter gradients reach the next
        ``backward(loss, name)`` like those of ``net(name)``."""
        return self.net(name)

    def no_sync(self, name: NetName) -> contextlib.AbstractContextManager:
        """Context that skips gradient all-reduce (accumulation micro-steps before the last)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def lr(self, name: NetName) -> float:
        """Current learning rate of ``name``'s optimizer."""

    @abc.abstractmethod
    def set_lr(self, name: NetName, lr: float) -> None:
        """Set the learning rate of ``name``'s optimizer."""

    # State ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def full_state(self) -> dict[str, Any]:
        """Full (unsharded) training state of both networks and optimizers, collected on every rank.

        Keys: ``G``, ``D`` (model state_dicts), ``opt_G``, ``opt_D`` (optimizer state_dicts or
        None where the backend saves sharded state itself), ``scaler`` (or None).
        """

    @abc.abstractmethod
    def load_full_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``full_state``."""

    def save_sharded(self, directory: Path) -> None:
        """Write per-rank sharded state into ``directory`` (called on every rank; DDP: nothing)."""

    def load_sharded(self, directory: Path) -> None:
        """Read what ``save_sharded`` wrote (called on every rank)."""

    # Teardown ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None:
        """Destroy the process group so the launcher sees the real exit status (gloo aborts the
        process at teardown otherwise, and the launcher reports a failure)."""


def iterate_nets() -> Iterator[NetName]:
    yield "G"
    yield "D"
