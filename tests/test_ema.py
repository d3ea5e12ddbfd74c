"""The EMA generator's BatchNorm statistics are estimated for its own weights before use."""

from __future__ import annotations

import copy

import torch

from gandist.ema import refresh_batchnorm_stats, update_ema
from gandist.models import ModelSpec, build_models


def _norms(g):
    return [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _true_stats(g, z, y) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel (mean, variance) of each BatchNorm's input over one large batch (z, y), every
    layer normalising with that batch's statistics: what the running statistics should estimate."""
    seen = []
    probe = copy.deepcopy(g).train()
    for m in _norms(probe):  # the probe is thrown away: no need to remove the hooks
        m.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    with torch.no_grad():
        probe(z, y)
    dims = lambda x: [d for d in range(x.dim()) if d != 1]  # noqa: E731
    return [(x.mean(dim=dims(x)), x.var(dim=dims(x))) for x in seen]


def _error(g, truth) -> float:
    """Largest error of the running statistics, relative to each layer's spread of values."""
    return max(max((m.running_mean - mean).abs().max().item() / var.mean().sqrt().item(),
                   (m.running_var - var).abs().max().item() / var.mean().item())
               for m, (mean, var) in zip(_norms(g), truth))


def test_refresh_replaces_copied_statistics_with_the_emas_own():
    torch.manual_seed(0)
    g, _ = build_models("dcgan", ModelSpec(16, 1, 10, z_dim=8, g_width=8, d_width=8))
    g.train()
    with torch.no_grad():
        for _ in range(30):  # G's own running statistics
            g(torch.randn(64, 8), torch.randint(0, 10, (64,)))
    ema = copy.deepcopy(g)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # the averaged weights drift from G's
        g(torch.randn(64, 8), torch.randint(0, 10, (64,)))
    update_ema(ema, g, decay=0.0)  # weights now G's; buffers copied from G
    z, y = torch.randn(4096, 8), torch.randint(0, 10, (4096,))
    truth = _true_stats(ema, z, y)
    copied_error = _error(ema, truth)

    refresh_batchnorm_stats(ema, z_dim=8, num_classes=10, seed=0, step=5, device=torch.device("cpu"))
    assert not ema.training
    refreshed_error = _error(ema, truth)
    assert refreshed_error < copied_error / 3, (refreshed_error, copied_error)
    assert all(m.momentum == 0.1 for m in _norms(ema))  # restored after the cumulative average

    # The same (seed, step) gives the same statistics: every rank, and a resumed run, agree.
    again = copy.deepcopy(ema)
    refresh_batchnorm_stats(again, z_dim=8, num_classes=10, seed=0, step=5, device=torch.device("cpu"))
    for a, b in zip(ema.buffers(), again.buffers()):
        assert torch.equal(a, b)


def test_refresh_leaves_a_model_without_batchnorm_alone():
    g, _ = build_models("r3", ModelSpec(16, 1, 10, z_dim=8, g_width=16, d_width=16))
    before = copy.deepcopy(g.state_dict())
    refresh_batchnorm_stats(g, z_dim=8, num_classes=10, seed=0, step=0, device=torch.device("cpu"))
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k])
