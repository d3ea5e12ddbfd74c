"""What the launcher (torchrun, ``accelerate launch``, srun) told this process, read once.

Standard library only, so the CLI can check batch divisibility and decide who prints before
torch is imported or any process group exists.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class LaunchEnv:
    world_size: int
    """Processes in the job (``WORLD_SIZE``; 1 without a launcher)."""
    rank: int
    """This process's global rank (``RANK``)."""
    local_rank: int
    """This process's index on its node (``LOCAL_RANK``): picks the GPU."""
    local_world_size: int
    """Processes on this node (``LOCAL_WORLD_SIZE``): they share the node's CPUs."""
    has_rendezvous: bool
    """The launcher gave an address to meet at (``MASTER_ADDR``/``MASTER_PORT`` with ``RANK``/``WORLD_SIZE``)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> "LaunchEnv":
        world_size = int(env.get("WORLD_SIZE", "1"))
        return cls(
            world_size=world_size,
            rank=int(env.get("RANK", "0")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world_size))),
            has_rendezvous=all(k in env for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")),
        )


@functools.lru_cache(maxsize=1)
def launch_env() -> LaunchEnv:
    """The launcher's environment of this process (read on first use, then cached)."""
    return LaunchEnv.from_environ(os.environ)
