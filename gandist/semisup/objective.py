"""The semi-supervised GAN objective (Salimans et al., 2016, "Improved Techniques for Training
GANs", sections 3.1 and 5): the losses as pure functions, and the D and G steps of
``train.objective=semisup`` that the training loop calls instead of its own.

D (K class logits, "generated" fixed at 0; see ``gandist.semisup.model``)::

    L_D = CE(l(x_lab), y)                                     labelled images
        + w * [ d_loss(lse l(x_real), lse l(G(z))) ]          every real image, and generated ones

with ``d_loss`` the configured GAN loss on the real/generated logit (BCE for ``feature_matching``)
and ``w`` = ``loss.unsupervised_weight``. G: feature matching, ||mean f(x_real) - mean f(G(z))||^2
on D's penultimate features f (``loss.name=feature_matching``), or the configured GAN loss on
lse l(G(z)).

One forward pass of D sees labelled, real and generated images together, so D's BatchNorm
statistics (and its running statistics, which classify test images) are those of that mixture
in every step.
"""

from __future__ import annotations

import contextlib
import numpy as np
import torch
import torch.nn.functional as F

from gandist.losses import GanLoss, bce_d_loss, get_loss, nonsaturating_g_loss

# Pure losses -------------------------------------------------------------------------------------


def real_logit(logits_bk: torch.Tensor) -> torch.Tensor:
    """The real-vs-generated logit of K class logits with "generated" fixed at 0:
    log(Z / (Z + 1)) - log(1 / (Z + 1)) = log Z = logsumexp_k l_k."""
    return torch.logsumexp(logits_bk, dim=1)


def supervised_loss(logits_bk: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """-log p(y | x, y < K+1): cross-entropy of the K class logits (the fixed 0 cancels)."""
    return F.cross_entropy(logits_bk, labels_b)


def unsupervised_d_loss(real_logits_bk: torch.Tensor, fake_logits_bk: torch.Tensor, gan: GanLoss) -> torch.Tensor:
    """The GAN loss on the real/generated logits: with BCE, -log D(x) - log(1 - D(G(z))) where
    D(x) = Z(x) / (Z(x) + 1)."""
    return gan.d_loss(real_logit(real_logits_bk), real_logit(fake_logits_bk))


def feature_matching_loss(real_mean_f: torch.Tensor, fake_sum_f: torch.Tensor, num_fake: int) -> torch.Tensor:
    """||mean f(x_real) - mean f(G(z))||^2, averaged over features. ``fake_sum_f`` is the sum of
    the fake features over the global batch (this rank's part differentiable), ``num_fake`` its size."""
    return ((real_mean_f.detach() - fake_sum_f / num_fake) ** 2).mean()


def gan_loss_for(loss_name: str) -> GanLoss:
    """The real/generated loss of the semisup objective: feature matching trains G on features
    and D with the BCE of Salimans et al."""
    if loss_name == "feature_matching":
        return GanLoss(bce_d_loss, nonsaturating_g_loss)
    return get_loss(loss_name)


# The D and G steps -------------------------------------------------------------------------------


class SemisupObjective:
    """D and G steps of a semi-supervised run.

    Each micro-batch adds a labelled batch of the same size as the real one, drawn with
    replacement from the labelled set by a generator seeded by (seed, step): the draw is a pure
    function of the step (a resume needs no state), and it is made for the global batch and
    sliced by rank and micro-batch, so N ranks see the labelled images one process would.
    """

    def __init__(self, labelled_images: np.ndarray, labelled_labels: np.ndarray, *, loss_name: str,
                 unsupervised_weight: float, seed: int, global_batch_size: int, random_flip: bool = False,
                 random_crop_pad: int = 0):
        self.images_u8 = torch.from_numpy(labelled_images)  # N x C x H x W, on CPU until a batch is drawn
        self.labels = torch.from_numpy(labelled_labels.astype(np.int64))
        self.feature_matching = loss_name == "feature_matching"
        self.gan = gan_loss_for(loss_name)
        self.unsupervised_weight = float(unsupervised_weight)
        self.seed = seed
        self.global_batch_size = global_batch_size
        self.random_flip, self.random_crop_pad = random_flip, random_crop_pad  # the stream's augmentation, also here
        self._real: list[torch.Tensor] = []  # the D step's real micro-batches, reused by the G step
        self._gen = torch.Generator()

    @property
    def gan_terms(self) -> bool:
        return self.unsupervised_weight > 0

    def labelled_batch(self, step: int, micro: int, rank: int, world_size: int, accum: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's labelled micro-batch ``micro`` of ``step``: (uint8 B x C x H x W, labels B),
        augmented like the real images (``data.random_flip``, ``data.random_crop_pad``)."""
        from gandist.data import augment_batch_np

        self._gen.manual_seed(hash((self.seed, step, 7919)) & 0x7FFF_FFFF_FFFF_FFFF)
        idx = torch.randint(0, len(self.labels), (self.global_batch_size,), generator=self._gen)
        if self.random_flip or self.random_crop_pad:
            # The whole global batch is augmented with one generator of (seed, step), then sliced:
            # any world size augments each image of the global batch the same way.
            rng = np.random.default_rng([self.seed, step, 7919])
            images = torch.from_numpy(augment_batch_np(self.images_u8[idx].numpy(), rng, self.random_flip, self.random_crop_pad))
        else:
            images = self.images_u8[idx]
        # rank x micro x B: this rank's micro-batch of the global batch as one process draws it.
        pick = torch.arange(self.global_batch_size).view(world_size, accum, -1)[rank, micro]
        images, idx = images[pick], idx[pick]
        return images, self.labels[idx]

    def d_micro_loss(self, d, real: torch.Tensor, labelled: torch.Tensor, labels: torch.Tensor, fake: torch.Tensor | None):
        """D's loss on one micro-batch (inputs in [-1, 1]) and its parts: (loss, stats tensor of
        [loss, supervised, unsupervised, D(real), D(fake), labelled accuracy])."""
        b_lab, b_real = len(labelled), len(real)
        x = torch.cat([labelled, real, fake]) if fake is not None else labelled
        logits = d(x).float()
        lab_logits = logits[:b_lab]
        sup = supervised_loss(lab_logits, labels)
        zero = sup.new_zeros(())
        if fake is not None:
            real_logits, fake_logits = logits[b_lab:b_lab + b_real], logits[b_lab + b_real:]
            unsup = unsupervised_d_loss(real_logits, fake_logits, self.gan)
            d_real = torch.sigmoid(real_logit(real_logits.detach())).mean()
            d_fake = torch.sigmoid(real_logit(fake_logits.detach())).mean()
        else:
            unsup, d_real, d_fake = zero, zero, zero
        loss = sup + self.unsupervised_weight * unsup
        acc = (lab_logits.detach().argmax(1) == labels).float().mean()
        return loss, torch.stack([loss.detach(), sup.detach(), unsup.detach(), d_real, d_fake, acc])

    def g_micro_loss(self, d, real: torch.Tensor, fake: torch.Tensor, group) -> torch.Tensor:
        """G's loss on one micro-batch through a frozen D. Feature matching compares batch means
        over the whole global micro-batch: the other ranks' sums enter as constants and the loss
        is scaled by the world size, so that DDP's gradient average gives exactly the gradient of
        the one-process loss."""
        if not self.feature_matching:
            return self.gan.g_loss(real_logit(d(fake).float()))
        _, feats = d(torch.cat([real, fake]), features=True)
        feats = feats.float()
        real_sum, fake_sum = feats[: len(real)].sum(0), feats[len(real):].sum(0)
        n_real = len(real) * group.world_size
        real_mean = group.reduce_sum(real_sum.detach()) / n_real
        others = group.reduce_sum(fake_sum.detach()) - fake_sum.detach()
        return group.world_size * feature_matching_loss(real_mean, fake_sum + others, len(fake) * group.world_size)

    # Called by the training loop (gandist.train) ---------------------------------------------------
    def components(self) -> dict:
        """Stateful parts that checkpoints keep (none: the labelled set is recorded in labelled.json)."""
        return {}

    def update(self, run) -> dict[str, torch.Tensor]:
        """One D update, then one G update (the interface of ``gandist.gan_objective.GanObjective``)."""
        stats = self.discriminator_step(run)
        stats["loss/G"] = self.generator_step(run)
        return stats

    def discriminator_step(self, run) -> dict[str, torch.Tensor]:
        from gandist.grid import to_unit_range

        engine, accum = run.engine, run.cfg.train.grad_accum
        g, d = engine.net("G"), engine.net("D")
        total = torch.zeros(6, device=engine.device)
        self._real = []
        for micro in range(accum):
            real_u8, _ = next(run.batches)  # unlabelled use: D learns only the labels of labelled.json
            real = to_unit_range(real_u8.to(engine.device, non_blocking=True))
            lab_u8, labels = self.labelled_batch(run.step, micro, engine.rank, engine.world_size, accum)
            labelled = to_unit_range(lab_u8.to(engine.device, non_blocking=True))
            labels = labels.to(engine.device, non_blocking=True)
            self._real.append(real)
            with engine.no_sync("D") if micro < accum - 1 else contextlib.nullcontext():
                with engine.autocast():
                    fake = None
                    if self.gan_terms:
                        z, _ = run.latents.draw(engine.batch_size_per_rank, run.step, 0, micro)
                        with torch.no_grad():
                            fake = g(z)
                    loss, stats = self.d_micro_loss(d, real, labelled, labels, fake)
                engine.backward(loss, "D")
            total += stats
        engine.step("D")
        total /= accum
        names = ("loss/D", "loss/D_supervised", "loss/D_unsupervised", "D/real", "D/fake", "D/labelled_accuracy")
        return dict(zip(names, total))

    def generator_step(self, run) -> torch.Tensor:
        """G's update (none when the GAN terms are off: nothing would train it)."""
        engine, accum = run.engine, run.cfg.train.grad_accum
        total = torch.zeros((), device=engine.device)
        if not self.gan_terms:
            return total
        g = engine.net("G")
        with engine.frozen("D") as d:  # see GanObjective.generator_step for why D is frozen
            for micro in range(accum):
                z, _ = run.latents.draw(engine.batch_size_per_rank, run.step, 1, micro)
                with engine.no_sync("G") if micro < accum - 1 else contextlib.nullcontext():
                    with engine.autocast():
                        loss = self.g_micro_loss(d, self._real[micro], g(z), engine)
                    engine.backward(loss, "G")
                total += loss.detach() / (engine.world_size if self.feature_matching else 1)
        engine.step("G")
        self._real = []
        return total / accum


def build_objective(cfg, labelled) -> SemisupObjective:
    """The objective of ``cfg`` over the labelled set (a ``gandist.semisup.labelled.LabelledSet``)."""
    return SemisupObjective(labelled.images, labelled.labels, loss_name=cfg.loss.name,
                            unsupervised_weight=cfg.loss.unsupervised_weight, seed=cfg.train.seed,
                            global_batch_size=cfg.train.batch_size, random_flip=cfg.data.random_flip,
                            random_crop_pad=cfg.data.random_crop_pad)

