"""Discriminator and generator penalties as pure functions of networks and inputs.

Gradient penalties (R1, R2, WGAN-GP) differentiate D's output with respect to its input with
``torch.autograd.grad(create_graph=True)`` and return a scalar that the caller adds to D's loss
*before* the one ``backward()`` of the step. That is the only form that works under DDP: DDP
all-reduces the parameter gradients of ``backward()`` but not gradients taken with
``autograd.grad`` (https://github.com/pytorch/pytorch/issues/63929), and under DeepSpeed the
engine's ``backward`` must see the whole loss. Every penalty is reduced in fp32, whatever the
forward precision.

Weights follow the papers: R1/R2 enter the loss as ``gamma / 2 * penalty`` (Mescheder et al.,
2018), GP as ``lambda * penalty`` (Gulrajani et al., 2017). With lazy regularization
(``reg.every_steps`` = k > 1) a due step multiplies the term by k, so its average over steps is
unchanged (Karras et al., 2020, StyleGAN2 appendix B).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from gandist.config import RegConfig
    from gandist.engine.process_group import ProcessGroup

Discriminator = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def input_gradient(d: Discriminator, x_bchw: torch.Tensor, y_b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits_b, dD/dx as fp32, B x C x H x W), the gradient kept in the graph so a loss built
    from it reaches D's parameters in the caller's backward."""
    x = x_bchw.detach().requires_grad_(True)
    logits = d(x, y_b)
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return logits, _at_least_fp32(grad)


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 -> fp32; fp64 (the finite-difference tests) stays fp64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def squared_grad_norm(d: Discriminator, x_bchw: torch.Tensor, y_b: torch.Tensor | None) -> torch.Tensor:
    """E_x ||dD(x)/dx||^2 over the batch: R1 on real images, R2 on generated ones."""
    _, grad = input_gradient(d, x_bchw, y_b)
    return grad.flatten(1).square().sum(dim=1).mean()


def r1_penalty(d: Discriminator, real_bchw: torch.Tensor, y_b: torch.Tensor | None) -> torch.Tensor:
    """R1 (Mescheder et al., 2018): squared gradient norm of D at real images."""
    return squared_grad_norm(d, real_bchw, y_b)


def r2_penalty(d: Discriminator, fake_bchw: torch.Tensor, y_b: torch.Tensor | None) -> torch.Tensor:
    """R2: the same at generated images (detached from G); R3GAN pairs it with R1."""
    return squared_grad_norm(d, fake_bchw.detach(), y_b)


def gradient_penalty(d: Discriminator, real_bchw: torch.Tensor, fake_bchw: torch.Tensor, y_b: torch.Tensor | None,
                     alpha_b: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al., 2017): E (||dD/dx at x_hat|| - 1)^2 with
    x_hat = alpha * real + (1 - alpha) * fake, alpha ~ U(0, 1) per image (drawn by the caller, so
    the draw is seeded like the rest of the step). Conditional D sees the real images' labels."""
    alpha = alpha_b.to(real_bchw.dtype).view(-1, *([1] * (real_bchw.ndim - 1)))
    x_hat = alpha * real_bchw.detach() + (1 - alpha) * fake_bchw.detach()
    _, grad = input_gradient(d, x_hat, y_b)
    norm_b = (grad.flatten(1).square().sum(dim=1) + 1e-12).sqrt()
    return (norm_b - 1.0).square().mean()


class LeCamAnchors:
    """LeCam regularization (Tseng et al., 2021): D's logits are pulled towards EMAs of the
    other side's mean logit, E relu(D(x) - a_fake)^2 + E relu(a_real - D(G(z)))^2.

    The anchors are training state: they go into the checkpoint (``state_dict``). ``update``
    takes the mean logits over *all* ranks, so every rank holds the same anchors.
    """

    def __init__(self, decay: float = 0.99):
        self.decay = decay
        self.real = 0.0
        self.fake = 0.0
        self.num_updates = 0

    def penalty(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return (F.relu(_at_least_fp32(real_logits) - self.fake).square().mean()
                + F.relu(self.real - _at_least_fp32(fake_logits)).square().mean())

    def update(self, real_mean: float, fake_mean: float) -> None:
        # The first update sets the anchors (an EMA started at 0 would pull towards 0 for ~100 steps).
        decay = self.decay if self.num_updates else 0.0
        self.real = decay * self.real + (1 - decay) * float(real_mean)
        self.fake = decay * self.fake + (1 - decay) * float(fake_mean)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"real": self.real, "fake": self.fake, "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.real, self.fake = float(state["real"]), float(state["fake"])
        self.num_updates, self.decay = int(state["num_updates"]), float(state["decay"])


def orthogonal_penalty(module: torch.nn.Module) -> torch.Tensor:
    """BigGAN's orthogonal regularization (Brock et al., 2019): sum over weight matrices W
    (conv kernels flattened to out x rest) of ||W W^T * (1 - I)||_F^2, which pushes filters
    apart without constraining their norms. Vectors (biases, norm scales) and embeddings
    (shared class embeddings are not filters) are skipped."""
    total = torch.zeros((), dtype=torch.float32, device=next(module.parameters()).device)
    embeddings = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Embedding)}
    for p in module.parameters():
        if p.ndim < 2 or not p.requires_grad or id(p) in embeddings:
            continue
        w = p.float().flatten(1)
        gram = w @ w.t()
        total = total + (gram * (1 - torch.eye(gram.shape[0], device=gram.device))).square().sum()
    return total


# The regularization of one run ------------------------------------------------------------------

GP_ALPHA_STREAM = 20  # seed_for(seed, step, GP_ALPHA_STREAM, micro): the GP interpolation weights


class Regularization:
    """The penalties ``reg.*`` turns on, as terms of D's and G's losses.

    ``d_terms`` runs in D's step ("Dreg" when the lazy interval says so) and returns weighted
    terms to add to the D loss before its one backward; ``g_term`` is added to G's loss. LeCam's
    anchors are the only state (``state_dict``, saved in the checkpoint).
    """

    def __init__(self, cfg: RegConfig, group: ProcessGroup, seed: int, grad_accum: int = 1):
        self.cfg, self.group, self.seed, self.cfg_accum = cfg, group, seed, grad_accum
        self.lecam = LeCamAnchors(cfg.lecam_decay) if cfg.lecam_weight else None
        self._gen = torch.Generator(device=group.device)

    def penalties_due(self, step: int) -> bool:
        return self.cfg.gradient_penalties and step % self.cfg.every_steps == 0

    def d_terms(self, d_real: Discriminator, d_fake: Discriminator, step: int, micro: int, real: torch.Tensor,
                labels: torch.Tensor | None, fake: torch.Tensor, fake_labels: torch.Tensor | None,
                real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named weighted terms of D's loss at ``step`` (empty when none applies). ``d_real`` and
        ``d_fake`` are D as the loss sees real and generated images (with the same augmentation
        draw in front as the loss's own passes), ``real``/``fake`` their inputs: the penalty is
        the gradient with respect to the image before augmentation, as in StyleGAN2-ADA."""
        cfg, terms = self.cfg, {}
        if self.penalties_due(step):
            lazy = float(cfg.every_steps)  # a penalty every k steps counts k times (StyleGAN2)
            if cfg.r1_gamma:
                terms["reg/r1"] = cfg.r1_gamma / 2 * lazy * r1_penalty(d_real, real, labels)
            if cfg.r2_gamma:
                terms["reg/r2"] = cfg.r2_gamma / 2 * lazy * r2_penalty(d_fake, fake, fake_labels)
            if cfg.gp_lambda:
                alpha = self._interpolation_weights(step, micro, real.shape[0], real.device)
                terms["reg/gp"] = cfg.gp_lambda * lazy * gradient_penalty(d_real, real, fake, labels, alpha)
        if self.lecam is not None:
            terms["reg/lecam"] = cfg.lecam_weight * self.lecam.penalty(real_logits, fake_logits)
        return terms

    def _interpolation_weights(self, step: int, micro: int, batch_per_rank: int, device: torch.device) -> torch.Tensor:
        """GP's alpha for this rank's micro-batch: one draw for the whole global batch of the step,
        sliced like the data (rank-major, then micro-batch), so N ranks use the alphas one process
        would and a resumed run draws the same."""
        num_micro = self.cfg_accum
        gen = self._gen.manual_seed(hash((self.seed, step, GP_ALPHA_STREAM)) & 0x7FFF_FFFF_FFFF_FFFF)
        alpha_all = torch.rand(self.group.world_size * num_micro * batch_per_rank, generator=gen, device=device)
        start = (self.group.rank * num_micro + micro) * batch_per_rank
        return alpha_all[start:start + batch_per_rank]

    def after_d_step(self, real_logit_mean: torch.Tensor, fake_logit_mean: torch.Tensor) -> None:
        """Move LeCam's anchors by this step's mean logits over all ranks (one all-reduce)."""
        if self.lecam is not None:
            real_mean, fake_mean = self.group.reduce_mean(torch.stack([real_logit_mean, fake_logit_mean]).float()).tolist()
            self.lecam.update(real_mean, fake_mean)

    def g_term(self, g: torch.nn.Module) -> torch.Tensor | None:
        """Orthogonal regularization of G's weights (the plain module), or None when off."""
        return self.cfg.ortho_weight * orthogonal_penalty(g) if self.cfg.ortho_weight else None

    def state_dict(self) -> dict[str, Any]:
        return {"lecam": self.lecam.state_dict() if self.lecam is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.lecam is not None and state.get("lecam") is not None:
            self.lecam.load_state_dict(state["lecam"])
