"""Reading DeepSpeed's checkpoint files without ever running code from them.

DeepSpeed loads its own files (``mp_rank_*_model_states.pt``, the ZeRO optimizer partitions,
the universal checkpoint's fragments) with ``torch.load(..., weights_only=False)``, in more than
twenty places (``runtime/checkpoint_engine/torch_checkpoint_engine.py``,
``checkpoint/ds_to_universal.py``, ``checkpoint/universal_checkpoint.py``, ...): a pickle planted
in a checkpoint's ``sharded/`` folder would run its code on resume. There is no DeepSpeed option
to change that, so while DeepSpeed reads a checkpoint, ``torch.load`` itself is replaced by a
weights-only load: PyTorch's restricted unpickler, which builds tensors, plain containers and
the few DeepSpeed data classes below, and refuses any other global (``os.system``,
``builtins.eval``, ...) before calling it.

The allowed DeepSpeed classes hold plain values only (a loss-scale record, an int enum, a
dataclass of two ints); the restricted unpickler builds them from ``__new__`` and their saved
attributes without calling any of their methods.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import torch

_lock = threading.Lock()


def deepspeed_data_classes() -> list[Any]:
    """The DeepSpeed classes its ZeRO-1/2 checkpoints contain besides tensors and plain data."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every ``torch.load`` in this process loads weights-only while the context is open."""
    original = torch.load
    allowed = deepspeed_data_classes()

    def load(f: Any, map_location: Any = None, pickle_module: Any = None, *, weights_only: Any = None, **kwargs: Any) -> Any:
        # pickle_module and weights_only are dropped on purpose: they are how a caller asks
        # for the full unpickler, which is what this context exists to prevent.
        with torch.serialization.safe_globals(allowed):
            return original(f, map_location=map_location, weights_only=True, **kwargs)

    with _lock:
        torch.load = load
        try:
            yield
        finally:
            torch.load = original
