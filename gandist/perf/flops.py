"""FLOPs of a training step (``torch.utils.flop_counter``) and the peak FLOP/s of known devices.

MFU (model FLOPs utilisation, PaLM appendix B) = FLOPs the step needs / step time / the device's
dense peak at the precision the matmuls and convolutions run in. The counter counts matrix
multiplies and convolutions, forward and backward, as executed: the D step (G forward, two D
forwards and backwards), the G step, not elementwise work (normalisation, activations, Adam).
"""

from __future__ import annotations

from typing import Callable

import torch

# Dense (no sparsity) peak TFLOP/s from the vendors' data sheets, tensor cores for bf16; "fp32"
# is the non-tensor-core rate (convolutions may run in TF32 by default, so fp32 MFU can exceed
# what that rate suggests). Matched by substring of ``torch.cuda.get_device_name()``, first match.
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bf16": 756.0, "fp32": 51.2}),
    ("H100 NVL", {"bf16": 835.0, "fp32": 60.0}),
    ("H100", {"bf16": 989.4, "fp32": 66.9}),  # SXM (H100 80GB HBM3)
    ("H200", {"bf16": 989.4, "fp32": 66.9}),
    ("GH200", {"bf16": 989.4, "fp32": 66.9}),
    ("B200", {"bf16": 2250.0, "fp32": 80.0}),
    ("A100", {"bf16": 312.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.1, "fp32": 91.6}),
    ("L4", {"bf16": 121.0, "fp32": 30.3}),
    ("A10", {"bf16": 125.0, "fp32": 31.2}),
    ("RTX 4090", {"bf16": 165.2, "fp32": 82.6}),
    ("RTX 3090", {"bf16": 71.0, "fp32": 35.6}),
]


def device_peak_tflops(device: torch.device, precision: str, override: float = 0.0) -> float | None:
    """Peak TFLOP/s of ``device`` at ``precision`` ("fp32" or "bf16"); ``override`` wins; None: unknown
    (every CPU, and GPUs missing from the table)."""
    if override > 0:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS:
        if key in name:
            return peaks.get("bf16" if precision in ("bf16", "fp16") else "fp32")
    return None


def count_step_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of ``step`` (which runs forward and backward passes)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())
