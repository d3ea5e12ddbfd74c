"""The semi-supervised D and G steps (``gandist.semisup.objective``) through an Engine, launched
with 1 or 2 processes by tests/test_semisup_dist.py.

Like ``engine_worker``: toy networks without BatchNorm (batch statistics would differ per rank),
and each step's real images and noise drawn for the global batch from a generator seeded by the
step, then sliced by rank and micro-batch, so every world size sees the same global batch. The
labelled subset comes from ``labelled.json`` in OUT, made by rank zero and read by every rank.
Each rank saves what the test compares to ``OUT/rank{r}.pt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

Z_DIM = 16
SIZE = 8


class ToyG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(Z_DIM, 64), nn.LeakyReLU(0.2), nn.Linear(64, SIZE * SIZE), nn.Tanh())

    def forward(self, z_bz: torch.Tensor, y_b=None) -> torch.Tensor:
        return self.net(z_bz).view(-1, 1, SIZE, SIZE)


def toy_trunk() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1), nn.LeakyReLU(0.2))


class GlobalLatents:
    """Noise of (step, phase) drawn for the global batch, this rank's micro-batch sliced out."""

    def __init__(self, engine, cfg):
        self.engine, self.cfg = engine, cfg

    def draw(self, batch: int, step: int, phase: int, micro: int):
        gen = torch.Generator().manual_seed(1000 * step + phase)
        z = torch.randn(self.cfg.train.batch_size, Z_DIM, generator=gen)
        return z.view(self.engine.world_size, self.cfg.train.grad_accum, batch, Z_DIM)[self.engine.rank, micro], None


def real_batches(engine, cfg):
    """This rank's real micro-batches, uint8, from each step's global batch."""
    b = cfg.train.batch_size_per_rank(engine.world_size)
    for step in range(cfg.train.steps):
        gen = torch.Generator().manual_seed(50_000 + step)
        real = torch.randint(0, 256, (cfg.train.batch_size, 1, SIZE, SIZE), generator=gen, dtype=torch.uint8)
        per_rank = real.view(engine.world_size, cfg.train.grad_accum, b, 1, SIZE, SIZE)[engine.rank]
        for micro in range(cfg.train.grad_accum):
            yield per_rank[micro], None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    out = Path(args.out)

    from gandist.config import load_config
    from gandist.data import resolve_dataset
    from gandist.engine import build_engine
    from gandist.semisup.labelled import prepare_labelled
    from gandist.semisup.model import SemisupDiscriminator
    from gandist.semisup.objective import build_objective

    cfg = load_config(None, args.overrides)
    torch.manual_seed(cfg.train.seed)
    g, d = ToyG(), SemisupDiscriminator(toy_trunk(), 10, SIZE, 1)
    opt = {name: torch.optim.Adam(net.parameters(), lr=lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
           for name, net, lr in (("G", g, cfg.optim.lr_g), ("D", d, cfg.optim.lr_d))}
    engine = build_engine(cfg, out)
    try:
        cfg.validate(engine.world_size)
        engine.prepare({"G": g, "D": d}, opt)
        labelled = prepare_labelled(out, resolve_dataset(cfg.data), cfg, engine, image_size=SIZE, channels=1, log=lambda s: None)
        objective = build_objective(cfg, labelled)
        run = SimpleNamespace(engine=engine, cfg=cfg, batches=real_batches(engine, cfg), latents=GlobalLatents(engine, cfg), step=0)
        losses = []
        for step in range(cfg.train.steps):
            run.step = step
            stats = objective.discriminator_step(run)
            loss_g = objective.generator_step(run)
            losses.append(engine.reduce_mean(torch.stack([stats["loss/D"], stats["loss/D_supervised"], loss_g])).tolist())
        full = engine.full_state()
        result = {"world_size": engine.world_size, "rank": engine.rank, "losses": losses,
                  "full": {k: full[k] for k in ("G", "D")},
                  "labelled": [f"{s['shard']}/{s['key']}" for s in labelled.record["samples"]],
                  "labelled_images": torch.from_numpy(labelled.images)}
        out.mkdir(parents=True, exist_ok=True)
        torch.save(result, out / f"rank{engine.rank}.pt")
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
