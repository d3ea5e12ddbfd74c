"""The GAN objective: what one training step does to D and to G.

``update`` runs one D update on real batches against generated ones, both seen through the
augmentation (DiffAugment/ADA), with the ``reg.*`` penalties ("Dreg") folded into D's one backward
when due, then one G update through a frozen D. The semi-supervised objective
(``gandist.semisup.objective``) offers the same ``update``/``components`` interface.
"""

from __future__ import annotations

import contextlib

import torch

from gandist.augment import FAKE_IN_D, FAKE_IN_G, REAL_IN_D, REAL_IN_G, Augmenter
from gandist.grid import to_unit_range
from gandist.logger import StepStats
from gandist.losses import get_loss
from gandist.regularizers import Regularization

Reals = list  # [(real images B x C x H x W in [-1, 1], labels B or None)] per micro-batch


class GanObjective:
    """Adversarial loss ``loss.name``, augmentation ``augment.*`` and penalties ``reg.*``."""

    def __init__(self, cfg, engine):
        self.loss_fn = get_loss(cfg.loss.name)
        self.augment = Augmenter(cfg.augment, engine, cfg.train.seed, cfg.train.batch_size)  # identity without a policy
        self.reg = Regularization(cfg.reg, engine, cfg.train.seed, cfg.train.grad_accum)
        self.ortho_logged = bool(cfg.reg.ortho_weight)

    def components(self) -> dict:
        """Stateful parts that checkpoints keep: ADA's p, LeCam's anchors."""
        return {"augment": self.augment, "reg": self.reg}

    def update(self, run) -> StepStats:
        """One D update, then one G update (``run``: a ``gandist.train.Run``)."""
        stats, reals = self.discriminator_step(run)
        stats.update(self.generator_step(run, reals))
        return stats

    def discriminator_step(self, run) -> tuple[StepStats, Reals]:
        """One D update on real batches vs generated ones (G's output detached), both seen through
        the augmentation; the reg.* terms join the loss before its one backward (under DDP a
        separate backward of a gradient penalty would not be all-reduced, PyTorch issue 63929).
        Returns the statistics and the real micro-batches (G's relativistic loss compares with them)."""
        engine, accum, step, aug = run.engine, run.cfg.train.grad_accum, run.step, self.augment
        g, d, d_for_penalty = engine.net("G"), engine.net("D"), engine.penalty_net("D")
        total = torch.zeros(3, device=engine.device)  # D loss, mean D(real), mean D(fake) as probabilities
        reg_sums: dict[str, torch.Tensor] = {}
        reals: Reals = []
        real_logits_all, logit_means = [], torch.zeros(2, device=engine.device)  # for ADA and LeCam
        for micro in range(accum):
            real_u8, labels = next(run.batches)
            real = to_unit_range(real_u8.to(engine.device, non_blocking=True))
            labels = labels.to(engine.device, non_blocking=True) if run.spec.num_classes else None
            reals.append((real, labels))
            z, fake_labels = run.latents.draw(engine.batch_size_per_rank, step, 0, micro)

            def seen_by(net, stream, micro=micro):  # D as the loss sees it: augmentation in front
                return lambda x, y: net(aug(x, step, stream, micro), y)

            d_real, d_fake = seen_by(d, REAL_IN_D), seen_by(d, FAKE_IN_D)

            with engine.no_sync("D") if micro < accum - 1 else contextlib.nullcontext():
                with engine.autocast():
                    with torch.no_grad():
                        fake = g(z, fake_labels)
                    real_logits = d_real(real, labels)
                    fake_logits = d_fake(fake, fake_labels)
                    loss = self.loss_fn.d_loss(real_logits.float(), fake_logits.float())
                    # "Dreg": the reg.* terms due at this step, added to the loss of the one backward.
                    terms = self.reg.d_terms(seen_by(d_for_penalty, REAL_IN_D), seen_by(d_for_penalty, FAKE_IN_D), step, micro,
                                            real, labels, fake, fake_labels, real_logits, fake_logits)
                engine.backward(loss + sum(terms.values()) if terms else loss, "D")
            total += torch.stack([loss.detach(), torch.sigmoid(real_logits.detach().float()).mean(),
                                  torch.sigmoid(fake_logits.detach().float()).mean()])
            for name, term in terms.items():
                reg_sums[name] = reg_sums.get(name, 0) + term.detach() / accum
            real_logits_all.append(real_logits.detach())
            logit_means += torch.stack([real_logits.detach().float().mean(), fake_logits.detach().float().mean()]) / accum
        engine.step("D")
        total /= accum
        stats = {"loss/D": total[0], "D/real": total[1], "D/fake": total[2], **reg_sums}
        if aug.policy:
            stats["augment/p"] = torch.tensor(aug.p, device=engine.device)
            aug.observe_real_logits(torch.cat(real_logits_all), step + 1)  # ADA heuristic
        self.reg.after_d_step(logit_means[0], logit_means[1])  # LeCam anchors
        return stats, reals

    def generator_step(self, run, reals: Reals) -> StepStats:
        """One G update through a frozen D (no D gradients: under ZeRO-2 they would fire D's
        gradient hooks and fail, DeepSpeed issue 4923). A relativistic loss also needs D on this
        step's real images, computed without any gradient."""
        engine, accum, step, aug = run.engine, run.cfg.train.grad_accum, run.step, self.augment
        g = engine.net("G")
        total = torch.zeros(2, device=engine.device)  # G loss, orthogonal regularization
        with engine.frozen("D") as d:
            for micro in range(accum):
                z, fake_labels = run.latents.draw(engine.batch_size_per_rank, step, 1, micro)
                with engine.no_sync("G") if micro < accum - 1 else contextlib.nullcontext():
                    with engine.autocast():
                        fake_logits = d(aug(g(z, fake_labels), step, FAKE_IN_G, micro), fake_labels).float()
                        real_logits = None
                        if self.loss_fn.needs_real_in_g:
                            real, labels = reals[micro]
                            with torch.no_grad():
                                real_logits = d(aug(real, step, REAL_IN_G, micro), labels).float()
                        loss = self.loss_fn.g_loss(fake_logits, real_logits)
                    ortho = self.reg.g_term(engine.unwrap("G"))  # outside autocast: an fp32 Gram matrix
                    engine.backward(loss + ortho if ortho is not None else loss, "G")
                total += torch.stack([loss.detach(), ortho.detach() if ortho is not None else torch.zeros((), device=engine.device)])
        engine.step("G")
        total /= accum
        stats = {"loss/G": total[0]}
        if self.ortho_logged:
            stats["reg/ortho"] = total[1]
        return stats
