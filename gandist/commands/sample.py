"""``gandist sample``: images from a run's EMA generator (or an exported .safetensors file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gandist.errors import BadInputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sample", help="write a grid of generated images", description="Write N images from the EMA generator as one PNG grid.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run-dir", type=Path, help="run directory (its newest good checkpoint is used) or one ckpt/step_* folder")
    src.add_argument("--generator", type=Path, help="exported generator: a gandist export folder or an older .safetensors export")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    p.add_argument("--class", dest="class_index", type=int, default=None, help="class index for a conditional generator (default: cycle through classes)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--truncation", type=float, default=0.0, help="resample |z| > this (0: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gandist.generators import load_generator
    from gandist.grid import save_grid

    if args.n < 1:
        raise BadInputError(f"--n: must be >= 1 (got {args.n})")
    if args.out.is_dir():
        raise BadInputError(f"--out: {args.out} is a directory; name the PNG file to write, e.g. {args.out / 'grid.png'}")
    g, info = load_generator(args.run_dir or args.generator)
    images = generate(g, info["spec"], args.n, class_index=args.class_index, seed=args.seed, truncation=args.truncation)
    nrow = None
    if info["spec"].num_classes and args.class_index is None and args.n % info["spec"].num_classes == 0:
        nrow = args.n // info["spec"].num_classes
    try:
        save_grid(images, args.out, nrow=nrow)
    except OSError as e:  # the write is atomic: nothing half-written is left behind
        raise BadInputError(f"--out: cannot write {args.out}: {e.strerror or e}") from None
    step = info.get("step")
    print(f"wrote {args.n} images{f' from step {step}' if step is not None else ''} to {args.out}")
    return 0


def generate(g, spec, n: int, *, class_index: int | None = None, seed: int = 0, truncation: float = 0.0,
             device="cpu"):
    """n images in [-1, 1] from generator g; conditional: class ``class_index`` or classes in blocks."""
    import torch

    with torch.no_grad():
        return _generate(torch, g, spec, n, class_index, seed, truncation, device)


def _generate(torch, g, spec, n, class_index, seed, truncation, device):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, spec.z_dim, generator=gen)
    if truncation > 0:  # truncation trick (Brock et al., 2019): resample outliers of the prior
        while (mask := z.abs() > truncation).any():
            z[mask] = torch.randn(int(mask.sum()), generator=gen)
    labels = None
    if spec.num_classes:
        if class_index is not None:
            if not 0 <= class_index < spec.num_classes:
                raise BadInputError(f"--class: must be in 0..{spec.num_classes - 1} (got {class_index})")
            labels = torch.full((n,), class_index, dtype=torch.long)
        else:
            labels = torch.arange(n) * spec.num_classes // n
    elif class_index is not None:
        raise BadInputError("--class: this generator is unconditional (trained with model.conditional=false)")
    g = g.to(device)
    return g(z.to(device), labels.to(device) if labels is not None else None).cpu()
