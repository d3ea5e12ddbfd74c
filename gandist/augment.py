"""Differentiable augmentation for the discriminator: DiffAugment (Zhao et al., 2020) with an
adaptive probability in the style of ADA (Karras et al., 2020).

D sees every image, real or generated, through the same random transformations, in its own
step and in G's step; the transformations are differentiable, so G's gradient passes through
them. Each transformation is applied to each image independently with probability ``p``
(p = 1 is DiffAugment as published; p = 0 is the identity, bit for bit).

Every random number comes from a ``torch.Generator`` the caller seeds (from seed, step, phase
and rank, like the latent noise), on the images' device: a resumed run draws what it would
have drawn, and nothing is copied from the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F

from gandist.config import AUGMENT_POLICIES as POLICIES

if TYPE_CHECKING:
    from gandist.config import AugmentConfig
    from gandist.engine.process_group import ProcessGroup

TRANSLATION_RATIO = 0.125  # shift up to 1/8 of the side (DiffAugment's default)
CUTOUT_RATIO = 0.5  # a square of half the side is zeroed (DiffAugment's default)


def diff_augment(x_bchw: torch.Tensor, policy: Sequence[str], p: float, gen: torch.Generator) -> torch.Tensor:
    """``x`` through the transformations of ``policy`` in the order color, translation, cutout,
    each applied per image with probability ``p``. Draws the same random numbers for any p, so
    a change of p (ADA) does not shift the draws of later transformations."""
    unknown = set(policy) - set(POLICIES)
    if unknown:
        raise ValueError(f"augment.policy: unknown transformation(s) {sorted(unknown)}; allowed values: {', '.join(POLICIES)}")
    out = x_bchw
    for name in POLICIES:
        if name in policy:
            out = _TRANSFORMS[name](out, p, gen)
    return out


def _uniform(gen: torch.Generator, x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, device=x.device, dtype=torch.float32)


def _where(apply_b: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per image: the transformed ``new`` where ``apply_b``, else ``old`` unchanged."""
    return torch.where(apply_b.view(-1, 1, 1, 1), new, old)


def _color(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    draws = _uniform(gen, x, 6, b)  # 3 x (apply?, amount)
    amount = draws[3:].to(x.dtype).view(3, b, 1, 1, 1)
    # Brightness: add U(-0.5, 0.5).
    x = _where(draws[0] < p, x + (amount[0] - 0.5), x)
    # Saturation: scale the deviation from the per-pixel channel mean by U(0, 2).
    mean_c = x.mean(dim=1, keepdim=True)
    x = _where(draws[1] < p, (x - mean_c) * (amount[1] * 2) + mean_c, x)
    # Contrast: scale the deviation from the image mean by U(0.5, 1.5).
    mean_all = x.mean(dim=(1, 2, 3), keepdim=True)
    return _where(draws[2] < p, (x - mean_all) * (amount[2] + 0.5) + mean_all, x)


def _translation(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    draws = _uniform(gen, x, 3, b)
    max_dy, max_dx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = (draws[1] * (2 * max_dy + 1)).floor().long() - max_dy  # uniform integers in [-max, max]
    dx = (draws[2] * (2 * max_dx + 1)).floor().long() - max_dx
    # Gather from a zero-padded copy: pixels shifted in from outside are 0 (mid-grey in [-1, 1]).
    rows = (torch.arange(h, device=x.device).view(1, h) - dy.view(b, 1)).clamp(-1, h) + 1  # B x H
    cols = (torch.arange(w, device=x.device).view(1, w) - dx.view(b, 1)).clamp(-1, w) + 1  # B x W
    padded = F.pad(x, (1, 1, 1, 1))  # B x C x (H+2) x (W+2)
    idx_rows = rows.view(b, 1, h, 1).expand(b, x.shape[1], h, w + 2)
    shifted = padded.gather(2, idx_rows)  # B x C x H x (W+2)
    idx_cols = cols.view(b, 1, 1, w).expand(b, x.shape[1], h, w)
    shifted = shifted.gather(3, idx_cols)  # B x C x H x W
    return _where(draws[0] < p, shifted, x)


def _cutout(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    draws = _uniform(gen, x, 3, b)
    size_h, size_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    cy = (draws[1] * h).floor().long().view(b, 1, 1)  # the square's centre, anywhere in the image
    cx = (draws[2] * w).floor().long().view(b, 1, 1)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy).abs() * 2 < size_h) & ((xs - cx).abs() * 2 < size_w)  # B x H x W
    return _where(draws[0] < p, x * (~inside).unsqueeze(1).to(x.dtype), x)


_TRANSFORMS = {"color": _color, "translation": _translation, "cutout": _cutout}


class AdaController:
    """Adaptive augmentation probability (ADA, Karras et al., 2020, section 3).

    The overfitting heuristic r_t = E[sign(D(x_real))]: near 0 when D cannot tell training
    images from generated ones, near 1 when it has memorised them. Every ``interval`` steps p moves
    by ``batch * interval / (kimg_to_one * 1000)`` up when r_t > ``target`` and down otherwise,
    so p can go from 0 to 1 in ``kimg_to_one`` thousand images. ``observe`` takes sums already
    reduced over ranks, so every rank holds the same p.
    """

    def __init__(self, target: float, interval: int, batch_size: int, kimg_to_one: float, p: float = 0.0):
        self.target, self.interval, self.batch_size, self.kimg_to_one = target, interval, batch_size, kimg_to_one
        self.p = p
        self.sign_sum = 0.0
        self.count = 0.0
        self.rt = 0.0  # the last heuristic value, for the log

    def observe(self, sign_sum: float, count: float) -> None:
        """Add one step's sum of sign(D(real)) and image count (both summed over ranks)."""
        self.sign_sum += float(sign_sum)
        self.count += float(count)

    def maybe_adjust(self, step: int) -> bool:
        """At every ``interval``-th step, move p by the heuristic; True when it did."""
        if step % self.interval or not self.count:
            return False
        self.rt = self.sign_sum / self.count
        direction = 1.0 if self.rt > self.target else -1.0
        self.p = min(1.0, max(0.0, self.p + direction * self.batch_size * self.interval / (self.kimg_to_one * 1000)))
        self.sign_sum, self.count = 0.0, 0.0
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "sign_sum": self.sign_sum, "count": self.count, "rt": self.rt}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p, self.sign_sum, self.count, self.rt = (float(state[k]) for k in ("p", "sign_sum", "count", "rt"))


# The augmentation of one run --------------------------------------------------------------------

# Which draw: the stream number in seed_for(seed, step, stream, micro). The latent noise uses
# phases 0 (D step) and 1 (G step); these are apart from them and from each other.
REAL_IN_D, FAKE_IN_D, FAKE_IN_G, REAL_IN_G = 10, 11, 12, 13


class Augmenter:
    """What ``augment.*`` asks for, in front of D: the policy, a fixed or adaptive p, the seeded
    draw. The ADA controller is its state (``state_dict``, saved in the checkpoint)."""

    def __init__(self, cfg: AugmentConfig, group: ProcessGroup, seed: int, batch_size: int):
        self.policy, self.fixed_p, self.group, self.seed = list(cfg.policy), cfg.p, group, seed
        self.ada = (AdaController(cfg.ada_target, cfg.ada_interval, batch_size, cfg.ada_kimg)
                    if cfg.policy and cfg.ada_target else None)
        self._gen = torch.Generator(device=group.device)

    @property
    def p(self) -> float:
        if not self.policy:
            return 0.0
        return self.ada.p if self.ada is not None else self.fixed_p

    def __call__(self, x_bchw: torch.Tensor, step: int, stream: int, micro: int) -> torch.Tensor:
        p = self.p
        if p == 0.0:  # the identity, without drawing
            return x_bchw
        gen = self._gen.manual_seed(self.group.seed_for(self.seed, step, stream, micro))
        return diff_augment(x_bchw, self.policy, p, gen)

    def observe_real_logits(self, real_logits: torch.Tensor, step: int) -> None:
        """ADA: add this step's sign(D(real)) over all ranks (one all-reduce), and adjust p
        when due. ``step`` counts finished steps."""
        if self.ada is None:
            return
        sign_sum, count = self.group.reduce_sum(
            torch.stack([torch.sign(real_logits.detach().float()).sum(), torch.tensor(float(real_logits.numel()), device=real_logits.device)])
        ).tolist()
        self.ada.observe(sign_sum, count)
        self.ada.maybe_adjust(step)

    def state_dict(self) -> dict[str, Any]:
        return {"ada": self.ada.state_dict() if self.ada is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ada is not None and state.get("ada") is not None:
            self.ada.load_state_dict(state["ada"])
