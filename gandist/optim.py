"""The optimizers of G and D and the learning-rate schedule they follow."""

from __future__ import annotations

import torch

from gandist.config import Config


def build_optimizers(cfg: Config, g: torch.nn.Module, d: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
    """One Adam per network (the engine wraps or shards them)."""
    betas = (cfg.optim.beta1, cfg.optim.beta2)
    return {
        "G": torch.optim.Adam(g.parameters(), lr=cfg.optim.lr_g, betas=betas, weight_decay=cfg.optim.weight_decay),
        "D": torch.optim.Adam(d.parameters(), lr=cfg.optim.lr_d, betas=betas, weight_decay=cfg.optim.weight_decay),
    }


def lr_factor(cfg: Config, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at ``step``: linear warmup, then constant or linear decay."""
    warmup = cfg.optim.warmup_steps
    if warmup and step < warmup:
        return (step + 1) / warmup
    if cfg.optim.lr_schedule == "linear":
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return 1.0
