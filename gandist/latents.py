"""What the generator is fed: noise vectors and class labels, drawn reproducibly."""

from __future__ import annotations

import torch

from gandist.engine.process_group import ProcessGroup


class LatentSampler:
    """Draws each micro-batch's noise (B x z_dim) and labels (B) from a generator seeded by
    (seed, step, phase, micro, rank): every rank draws its own, and a resumed run draws exactly
    what it would have drawn."""

    def __init__(self, group: ProcessGroup, z_dim: int, num_classes: int, seed: int):
        self.group, self.z_dim, self.num_classes, self.seed = group, z_dim, num_classes, seed
        # On the training device: a CPU draw plus a host-to-device copy cost ~10% of a small
        # model's GPU step. Reseeding one generator is cheap and keeps the draw a pure function.
        self._gen = torch.Generator(device=group.device)

    def draw(self, batch: int, step: int, phase: int, micro: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        gen = self._gen.manual_seed(self.group.seed_for(self.seed, step, phase, micro))
        device = self.group.device
        z = torch.randn(batch, self.z_dim, generator=gen, device=device)
        labels = torch.randint(0, self.num_classes, (batch,), generator=gen, device=device) if self.num_classes else None
        return z, labels


def fixed_noise(num_images: int, z_dim: int, num_classes: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The noise behind every sample grid, identical across a run's grids so progress is visible.
    Conditional: one row per class (as many full rows as fit in ``num_images``)."""
    gen = torch.Generator().manual_seed(seed + 12345)
    labels = None
    if num_classes:
        per_class = max(1, num_images // num_classes)
        num_images = per_class * num_classes
        labels = torch.arange(num_classes).repeat_interleave(per_class).to(device)
    z = torch.randn(num_images, z_dim, generator=gen).to(device)
    return z, labels
