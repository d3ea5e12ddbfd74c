"""The EMA generator: an exponential moving average of G's weights, which is what samples,
evaluation, ``synth`` and ``export`` use.

Averaging weights does not average BatchNorm statistics: the running mean and variance that G
tracked during training describe G's activations, not those of the averaged weights. Copied
as they are, they shift every activation of the EMA generator at eval time. So before the EMA is
sampled, evaluated or saved, its BatchNorm statistics are estimated afresh from its own
activations ("standing statistics", as BigGAN does before sampling). Measured on the built-in
digits: CAS 92.9 % -> 93.9 % for the same weights (2 classifier seeds each).
"""

from __future__ import annotations

import torch
from torch import nn

REFRESH_BATCHES = 16
"""Batches of generated images the BatchNorm statistics are estimated from."""
REFRESH_BATCH_SIZE = 128


@torch.no_grad()
def update_ema(ema: nn.Module, g: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * g`` for the weights; buffers are copied (see
    ``refresh_batchnorm_stats`` for the statistics the EMA is used with)."""
    ema_params, params = list(ema.parameters()), [p.detach() for p in g.parameters()]
    if params[0].dtype != ema_params[0].dtype:  # zero keeps bf16/fp16 working weights
        params = [p.to(ema_params[0].dtype) for p in params]
    # One multi-tensor kernel for all parameters instead of one small kernel each.
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    torch._foreach_copy_(list(ema.buffers()), list(g.buffers()))


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def refresh_batchnorm_stats(ema: nn.Module, z_dim: int, num_classes: int, seed: int, step: int,
                            device: torch.device) -> None:
    """Re-estimate every BatchNorm's running mean and variance of ``ema`` from its own outputs on
    ``REFRESH_BATCHES`` batches of noise (classes drawn uniformly), as a plain average over the
    batches. The draw depends only on (seed, step): every rank computes the same statistics, and
    a resumed run the same as an uninterrupted one. Leaves ``ema`` in eval mode."""
    norms = [m for m in ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step + 7)
    ema.train()
    try:
        for _ in range(REFRESH_BATCHES):
            z = torch.randn(REFRESH_BATCH_SIZE, z_dim, generator=gen).to(device)
            y = torch.randint(0, num_classes, (REFRESH_BATCH_SIZE,), generator=gen).to(device) if num_classes else None
            ema(z, y)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        ema.eval()
