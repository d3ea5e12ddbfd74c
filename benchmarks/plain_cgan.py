"""A plain PyTorch conditional DCGAN: the baseline gandist's defaults must beat.

What a user writes in an afternoon without gandist: a label embedding multiplied into z, a
DCGAN generator, a projection discriminator (Miyato & Koyama, 2018), the non-saturating loss,
Adam 2e-4 / beta1 0.5, batch 64. No EMA, no augmentation, no regularizer, no tuning. It reads
a shard directory with gandist's reader (only to get the same images) and writes its samples as
labelled shards, so ``gandist classify`` scores both the same way.

    python benchmarks/plain_cgan.py --train SHARDS --out SYNTH --per-class 400 [--steps N | --cpu-seconds S]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Generator(nn.Module):
    def __init__(self, z_dim: int, classes: int, channels: int, size: int, width: int = 64):
        super().__init__()
        self.ups = 3 if size >= 64 else 2
        self.start = size // 2 ** self.ups
        self.embed = nn.Embedding(classes, z_dim)
        self.fc = nn.Linear(z_dim, width * 4 * self.start * self.start)
        self.width = width
        layers, c = [nn.BatchNorm2d(width * 4), nn.ReLU(True)], width * 4
        for i in range(self.ups):
            out = channels if i == self.ups - 1 else c // 2
            layers += [nn.ConvTranspose2d(c, out, 4, 2, 1)]
            layers += [nn.Tanh()] if i == self.ups - 1 else [nn.BatchNorm2d(out), nn.ReLU(True)]
            c = out
        self.net = nn.Sequential(*layers)

    def forward(self, z, y):
        h = self.fc(z * self.embed(y)).view(len(z), self.width * 4, self.start, self.start)
        return self.net(h)


class Discriminator(nn.Module):
    def __init__(self, classes: int, channels: int, size: int, width: int = 64):
        super().__init__()
        downs = 3 if size >= 64 else 2
        layers, c = [], channels
        for i in range(downs):
            out = width * 2 ** i
            layers += [nn.Conv2d(c, out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            c = out
        self.net = nn.Sequential(*layers)
        self.features = c * (size // 2 ** downs) ** 2
        self.out = nn.Linear(self.features, 1)
        self.embed = nn.Embedding(classes, self.features)

    def forward(self, x, y):
        h = self.net(x).flatten(1)
        return self.out(h).squeeze(1) + (self.embed(y) * h).sum(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=400)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--cpu-seconds", type=float, default=0.0,
                    help="train for this much CPU time of this process instead of --steps (equal-CPU-time comparisons)")
    ap.add_argument("--z-dim", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from gandist.classification.labelled_shards import load_labelled
    from gandist.data import write_shards

    data, info = load_labelled(args.train, "--train")
    torch.manual_seed(args.seed)
    x_all = torch.from_numpy(data.images).float().div(127.5).sub(1)
    y_all = torch.from_numpy(data.labels)
    classes, channels, size = info.num_classes, x_all.shape[1], x_all.shape[-1]
    G, D = Generator(args.z_dim, classes, channels, size), Discriminator(classes, channels, size)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    start, cpu_start, step = time.perf_counter(), time.process_time(), 0
    while (step < args.steps) if not args.cpu_seconds else (time.process_time() - cpu_start < args.cpu_seconds):
        idx = torch.randint(0, len(x_all), (args.batch_size,))
        x, y = x_all[idx], y_all[idx]
        z = torch.randn(len(x), args.z_dim)
        fake = G(z, y)
        loss_d = F.softplus(-D(x, y)).mean() + F.softplus(D(fake.detach(), y)).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-D(fake, y)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        step += 1
    train_wall, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start

    G.eval()
    samples = []
    with torch.no_grad():
        for c in range(classes):
            y = torch.full((args.per_class,), c, dtype=torch.long)
            img = G(torch.randn(args.per_class, args.z_dim), y).clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
            samples += [(f"{c:03d}{i:06d}", im.permute(1, 2, 0).squeeze(-1).numpy(), c) for i, im in enumerate(img)]
    write_shards(samples, args.out, class_names=data.class_names, shard_size=1000, extra={"source": "benchmarks/plain_cgan.py"})
    summary = {"steps": step, "train_wall_sec": round(train_wall, 1), "train_cpu_sec": round(train_cpu, 1), "per_class": args.per_class}
    (args.out / "plain_cgan.json").write_text(json.dumps(summary))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
