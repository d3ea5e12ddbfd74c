"""A process group for the verbs that only evaluate or generate (``eval``, ``synth``).

They need ranks, a device and an all-gather, not the training engine's prepare/backward/step,
so they use this small object, which offers the same calls as ``gandist.engine.base.Engine``
(``rank``, ``world_size``, ``device``, ``gather``, ``all_agree``, ``barrier``, ``is_main``).
Launched with ``accelerate launch``/``torchrun`` it joins their process group; without a
launcher it is a single process.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


class ProcessGroup:
    def __init__(self, timeout_minutes: float = 30.0):
        self._owns_group = False
        if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
            self._owns_group = True
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            self.device = torch.device("cuda", local)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def all_agree(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        # int32: supported by every backend's MIN reduction, unlike bool.
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        # Destroy what we created, or gloo aborts at exit and the launcher reports failure (DESIGN fact 5).
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
