"""Adversarial losses as pure functions of discriminator logits.

Each loss is a pair: ``d_loss(real_logits, fake_logits)`` for the discriminator step and
``g_loss(fake_logits, real_logits)`` for the generator step. The relativistic losses compare
real and generated logits, so their G loss needs D(real) too; ``needs_real_in_g`` says so, and
the G step then runs D on a real batch (no gradient reaches D: its parameters are frozen
there). The others ignore ``real_logits`` (pass None). Logits, not probabilities: the BCE
forms use ``softplus`` (log(1 + e^x)), which is exact where ``log(sigmoid(x))`` underflows.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

Logits = torch.Tensor  # shape B, one logit per image


class GanLoss(NamedTuple):
    d_loss: Callable[[Logits, Logits], torch.Tensor]
    g_loss: Callable[[Logits, Logits | None], torch.Tensor]
    needs_real_in_g: bool = False


def bce_d_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), averaged (Goodfellow et al., 2014)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def minimax_g_loss(fake_logits: Logits, real_logits: Logits | None = None) -> torch.Tensor:
    """log(1 - D(G(z))): the original minimax objective; its gradient vanishes when D wins."""
    return -F.softplus(fake_logits).mean()


def nonsaturating_g_loss(fake_logits: Logits, real_logits: Logits | None = None) -> torch.Tensor:
    """-log D(G(z)): same fixed point as minimax, strong gradients early in training."""
    return F.softplus(-fake_logits).mean()


def lsgan_d_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """Least squares (Mao et al., 2017), targets 1 for real and 0 for fake, with the 1/2 factor."""
    return 0.5 * ((real_logits - 1.0) ** 2).mean() + 0.5 * (fake_logits**2).mean()


def lsgan_g_loss(fake_logits: Logits, real_logits: Logits | None = None) -> torch.Tensor:
    return 0.5 * ((fake_logits - 1.0) ** 2).mean()


def hinge_d_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """max(0, 1 - D(x)) + max(0, 1 + D(G(z))) (Lim & Ye, 2017; SNGAN, BigGAN)."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def critic_g_loss(fake_logits: Logits, real_logits: Logits | None = None) -> torch.Tensor:
    """-D(G(z)): the generator loss of hinge and WGAN."""
    return -fake_logits.mean()


def wgan_d_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """Critic loss D(G(z)) - D(x) (Arjovsky et al., 2017); needs a Lipschitz bound on D
    (``reg.gp_lambda``, WGAN-GP, or spectral norm)."""
    return fake_logits.mean() - real_logits.mean()


def rpgan_d_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """Relativistic pairing (Jolicoeur-Martineau, 2018; R3GAN, Huang et al., 2024):
    softplus(-(D(x_i) - D(G(z_i)))) over pairs i of one real and one generated image."""
    return F.softplus(fake_logits - real_logits).mean()


def rpgan_g_loss(fake_logits: Logits, real_logits: Logits | None) -> torch.Tensor:
    """The same pairs with the roles swapped: softplus(-(D(G(z_i)) - D(x_i)))."""
    return F.softplus(real_logits - fake_logits).mean()


def ragan_d_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """Relativistic average (Jolicoeur-Martineau, 2018): a real image should look more real than
    the average generated one, and a generated one less real than the average real one. The
    averages are over this rank's batch."""
    return F.softplus(-(real_logits - fake_logits.mean())).mean() + F.softplus(fake_logits - real_logits.mean()).mean()


def ragan_g_loss(fake_logits: Logits, real_logits: Logits | None) -> torch.Tensor:
    return F.softplus(-(fake_logits - real_logits.mean())).mean() + F.softplus(real_logits - fake_logits.mean()).mean()


LOSSES: dict[str, GanLoss] = {
    "nonsaturating": GanLoss(bce_d_loss, nonsaturating_g_loss),
    "minimax": GanLoss(bce_d_loss, minimax_g_loss),
    "lsgan": GanLoss(lsgan_d_loss, lsgan_g_loss),
    "hinge": GanLoss(hinge_d_loss, critic_g_loss),
    "wgan": GanLoss(wgan_d_loss, critic_g_loss),
    "rpgan": GanLoss(rpgan_d_loss, rpgan_g_loss, needs_real_in_g=True),
    "ragan": GanLoss(ragan_d_loss, ragan_g_loss, needs_real_in_g=True),
}


def get_loss(name: str) -> GanLoss:
    if name not in LOSSES:
        raise ValueError(f"loss.name: unknown loss {name!r}; allowed values: {', '.join(LOSSES)}")
    return LOSSES[name]
