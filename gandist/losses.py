"""Adversarial losses as pure functions of discriminator logits.

Each loss is a pair: ``d_loss(real_logits, fake_logits)`` for the discriminator step and
``g_loss(fake_logits)`` for the generator step. Logits, not probabilities: the BCE forms use
``softplus`` (log(1 + e^x)), which is exact where ``log(sigmoid(x))`` underflows.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


class GanLoss(NamedTuple):
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]


def bce_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), averaged (Goodfellow et al., 2014)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def minimax_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """log(1 - D(G(z))): the original minimax objective; its gradient vanishes when D wins."""
    return -F.softplus(fake_logits).mean()


def nonsaturating_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): same fixed point as minimax, strong gradients early in training."""
    return F.softplus(-fake_logits).mean()


def lsgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Least squares (Mao et al., 2017), targets 1 for real and 0 for fake, with the 1/2 factor."""
    return 0.5 * ((real_logits - 1.0) ** 2).mean() + 0.5 * (fake_logits**2).mean()


def lsgan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((fake_logits - 1.0) ** 2).mean()


LOSSES: dict[str, GanLoss] = {
    "nonsaturating": GanLoss(bce_d_loss, nonsaturating_g_loss),
    "minimax": GanLoss(bce_d_loss, minimax_g_loss),
    "lsgan": GanLoss(lsgan_d_loss, lsgan_g_loss),
}


def get_loss(name: str) -> GanLoss:
    return LOSSES[name]
