"""Parameter counts and CPU milliseconds per training step of every model in the zoo.

One step = one D update (G forward without grad, D on real and fake, non-saturating loss,
Adam) and one G update (G and D forward, D frozen, Adam): the models' own cost, without the
engine or the data loader (benchmarks/train_step.py measures those). Conditional, 10 classes,
3 channels. Parameter counts are also given at each recipe's widths (configs/*.yaml).

    OMP_NUM_THREADS=1 python benchmarks/models.py                  # 32x32, batch 64, widths 64
    OMP_NUM_THREADS=1 python benchmarks/models.py --width 128 --steps 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gandist.config import config_from_dict  # noqa: E402
from gandist.models import SPECTRAL_NORM_D_DEFAULT, ModelSpec, build_models  # noqa: E402

MODELS = ["dcgan", "mlp", "resnet", "biggan", "r3"]
RECIPES = ["resnet_cifar10", "biggan_cifar10", "r3_cifar10", "wgan_gp_cifar10", "classes_folder_64"]


def num_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def step_ms(name: str, spec: ModelSpec, batch: int, steps: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this process's user + system time) milliseconds of each timed step.
    On a shared machine the CPU time is the steadier figure: waiting for a core is not counted."""
    torch.manual_seed(0)
    g, d = build_models(name, spec)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.0, 0.9))
    real = torch.rand(batch, spec.channels, spec.image_size, spec.image_size) * 2 - 1
    y = torch.randint(0, spec.num_classes, (batch,))
    times, cpu_times = [], []
    for i in range(steps + 2):  # two warm-up steps
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            fake = g(torch.randn(batch, spec.z_dim), y)
        loss_d = F.softplus(-d(real, y)).mean() + F.softplus(d(fake, y)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        d.requires_grad_(False)
        loss_g = F.softplus(-d(g(torch.randn(batch, spec.z_dim), y), y)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        d.requires_grad_(True)
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1000)
            cpu_times.append((time.process_time() - c0) * 1000)
    return times, cpu_times


def recipe_params(name: str) -> dict:
    # Only the model and data sections: the recipe's other keys do not change the networks.
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml").read_text())
    cfg = config_from_dict({"model": raw["model"], "data": raw["data"]})
    m = cfg.model
    spec = ModelSpec(cfg.data.image_size, cfg.data.channels or 3, 10, m.z_dim, m.g_width, m.d_width, m.d_minibatch_std,
                     {"on": True, "off": False}.get(m.spectral_norm_d, SPECTRAL_NORM_D_DEFAULT[m.name]), m.attention_resolution)
    g, d = build_models(m.name, spec)
    return {"recipe": name, "model": m.name, "image_size": spec.image_size, "g_width": m.g_width, "d_width": m.d_width,
            "params_G": num_params(g), "params_D": num_params(d)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=64, help="g_width and d_width of every model")
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps per model (after 2 warm-up steps)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    rows = []
    for name in args.models.split(","):
        spec = ModelSpec(args.image_size, 3, 10, args.z_dim, args.width, args.width, attention_resolution=16 if name == "biggan" else 0)
        g, d = build_models(name, spec)
        times, cpu_times = step_ms(name, spec, args.batch, args.steps)
        rows.append({"model": name, "params_G": num_params(g), "params_D": num_params(d),
                     "cpu_ms_per_step_median": round(statistics.median(cpu_times), 1),
                     "wall_ms_per_step_median": round(statistics.median(times), 1)})
        print(rows[-1], flush=True)
    recipes = []
    for name in RECIPES:
        recipes.append(recipe_params(name))
        print(recipes[-1], flush=True)

    stamp = datetime.date.today().isoformat()
    meta = {"date": stamp, "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "load_average_1min": os.getloadavg()[0], "image_size": args.image_size, "batch": args.batch, "width": args.width,
            "z_dim": args.z_dim, "steps": args.steps}
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"models_cpu_{args.image_size}px_{stamp}"
    base.with_suffix(".json").write_text(json.dumps({"meta": meta, "models": rows, "recipes": recipes}, indent=1))
    lines = [f"# Model zoo on CPU: {args.image_size}x{args.image_size}x3, batch {args.batch}, widths {args.width}, z {args.z_dim}, 10 classes",
             "", f"`OMP_NUM_THREADS={meta['threads']} python benchmarks/models.py` ({stamp}, torch {meta['torch']}, "
             f"1-min load average at the end {meta['load_average_1min']:.1f}. CPU ms: this process's CPU time, one thread; "
             "wall ms also counts waiting for a core, which a loaded machine inflates).", "",
             "| model | params G | params D | CPU ms/step (median) | wall ms/step (median) |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['model']} | {r['params_G']:,} | {r['params_D']:,} | {r['cpu_ms_per_step_median']:,} | {r['wall_ms_per_step_median']:,} |" for r in rows]
    lines += ["", "Parameters at the recipes' widths (10 classes):", "", "| recipe | model | size | widths G/D | params G | params D |",
              "| --- | --- | ---: | --- | ---: | ---: |"]
    lines += [f"| {r['recipe']} | {r['model']} | {r['image_size']} | {r['g_width']}/{r['d_width']} | {r['params_G']:,} | {r['params_D']:,} |"
              for r in recipes]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {base}.md and .json")


if __name__ == "__main__":
    main()
