"""Recipes on the built-in digits at equal training time: recipe x CAS/real x FID x minutes.

Each recipe (a config file plus overrides) first trains ``--calib-steps`` steps to measure its
CPU seconds per step on this machine, then trains for as many steps as fit in ``--minutes`` of
CPU time (one thread), and goes
through the README's path: ``synth`` (``--per-class``, 2000 by default) -> ``classify --protocol cas`` against the
real test split -> ``eval`` with the domain classifier of ``classify --protocol real`` (FID,
precision/recall, per-class recall in that classifier's features). Writes
``OUT/recipes_digits.{md,json}``.

    python benchmarks/recipes_digits.py --work /tmp/recipes --minutes 2 --jobs 2 --out benchmarks/results

The budget is CPU time, so other jobs on a shared machine change the wall time more than the
step count; the table records both.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The CIFAR-10 recipes of configs/ on the digits: the data's own size and single channel, no flips
# (a mirrored digit is another glyph), and the default's widths, batch and EMA, so that at equal
# CPU time the rows compare each recipe's model, loss, regularizers and augmentation rather than
# its size (at their published widths, 128-768 channels, two CPU minutes are a few dozen steps).
ON_DIGITS = ["data.image_size=0", "data.channels=0", "data.random_flip=false", "model.g_width=64", "model.d_width=64",
             "train.batch_size=32", "train.ema_decay=0.999", "train.ema_start_step=100", "log.sample_every_steps=250"]

# name -> (config file relative to the repository, overrides)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "default (dcgan_digits)": ("configs/dcgan_digits.yaml", []),
    "dcgan z 64 (the default before 2026-11-28 pm)": ("configs/dcgan_digits.yaml", ["model.z_dim=64"]),
    "dcgan + hinge": ("configs/dcgan_digits.yaml", ["loss.name=hinge"]),
    "resnet_cifar10 (SNGAN)": ("configs/resnet_cifar10.yaml", ON_DIGITS),
    "biggan_cifar10": ("configs/biggan_cifar10.yaml", ON_DIGITS),
    "biggan_diffaug_lowdata": ("configs/biggan_diffaug_lowdata.yaml", ON_DIGITS),
    "r3_cifar10 (R3GAN objective)": ("configs/r3_cifar10.yaml", ON_DIGITS),
    "wgan_gp_cifar10": ("configs/wgan_gp_cifar10.yaml", ON_DIGITS),
}


def gandist(*args, log: Path) -> tuple[float, float]:
    """Run ``python -m gandist ARGS``; returns (wall seconds, CPU seconds of the child)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    with open(log, "a") as f:
        proc = subprocess.Popen([sys.executable, "-m", "gandist", *map(str, args)], env=env, stdout=f, stderr=subprocess.STDOUT)
        # wait4: this child's own CPU time (RUSAGE_CHILDREN would mix in the recipes run beside it).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"gandist {' '.join(map(str, args))} failed ({proc.returncode}); see {log}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=None, help="scratch directory (data, runs, reports); required unless --list")
    p.add_argument("--minutes", type=float, default=2.0, help="training CPU minutes per recipe (default 2)")
    p.add_argument("--calib-steps", type=int, default=300, help="steps of the timing run per recipe (default 300: fewer are lost in the start-up time's noise)")
    p.add_argument("--recipes", default="", help="comma-separated recipe names (default: all); list them with --list")
    p.add_argument("--classify-steps", type=int, default=300, help="classifier training steps (default 300)")
    p.add_argument("--per-class", type=int, default=2000, help="synthetic images per class for CAS (default 2000, as digits_path.sh)")
    p.add_argument("--jobs", type=int, default=1, help="recipes measured at once, one CPU thread each (default 1)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="where the table goes")
    p.add_argument("--list", action="store_true", help="print the recipe names and exit")
    args = p.parse_args()
    if args.list:
        print("\n".join(RECIPES))
        return 0
    if args.work is None:
        p.error("--work is required")
    names = [n.strip() for n in args.recipes.split(",") if n.strip()] or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        print(f"--recipes: unknown {unknown}; known: {list(RECIPES)}", file=sys.stderr)
        return 2

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GANDIST_CACHE", str(work / "cache"))
    log = work / "log.txt"
    data = {split: work / "data" / f"digits-{split}" for split in ("train", "test")}
    for split, path in data.items():
        if not (path / "manifest.json").is_file():
            gandist("shards", "make", "--builtin", "digits", "--split", split, "--out", path, log=log)
    real_dir = work / "reports" / "real"
    if not (real_dir / "classify_report.json").is_file():
        gandist("classify", "--train", data["train"], "--test", data["test"], "--protocol", "real", "--seeds", 1,
                "--steps", args.classify_steps, "--out", real_dir, log=log)
    real_acc = json.loads((real_dir / "classify_report.json").read_text())["real"]["real"]["accuracy_mean"]
    domain = real_dir / "domain_classifier.safetensors"

    def measure(i: int, name: str) -> dict:
        config, overrides = RECIPES[name]
        tag = f"r{i}"
        log = work / f"log_{tag}.txt"
        common = ["--config", REPO / config, f"data.path={data['train']}", "log.progress=false", *overrides]
        # CPU seconds per step: a run of calib_steps minus a run of 1 step (startup: imports, data,
        # the final checkpoint). CPU time, not wall time, so other jobs on the machine matter less.
        quiet = ["log.every_steps=20", "log.sample_every_steps=0"]
        _, cpu_one = gandist("train", "--run-dir", work / "runs" / f"{tag}_calib1", *common, *quiet, "train.steps=1", log=log)
        _, cpu_many = gandist("train", "--run-dir", work / "runs" / f"{tag}_calib", *common, *quiet,
                              f"train.steps={args.calib_steps + 1}", f"checkpoint.every_steps={args.calib_steps + 1}", log=log)
        cpu_per_step = max(cpu_many - cpu_one, 1e-3) / args.calib_steps
        steps = max(1, int(args.minutes * 60 / cpu_per_step))
        run_dir = work / "runs" / tag
        wall, cpu = gandist("train", "--run-dir", run_dir, *common, f"train.steps={steps}", log=log)
        gandist("synth", "--run-dir", run_dir, "--per-class", args.per_class, "--out", work / "synth" / tag, log=log)
        gandist("classify", "--train", data["train"], "--test", data["test"], "--synthetic", work / "synth" / tag,
                "--protocol", "cas", "--seeds", 1, "--steps", args.classify_steps, "--out", work / "reports" / tag, log=log)
        cas = json.loads((work / "reports" / tag / "classify_report.json").read_text())["cas"]["synthetic"]["accuracy_mean"]
        gandist("eval", "--run-dir", run_dir, f"metrics.classifier={domain}", "--out", work / "reports" / tag / "eval.json", log=log)
        metrics = json.loads((work / "reports" / tag / "eval.json").read_text())["metrics"]
        print(f"{name}: {steps} steps, CAS/real {cas / real_acc:.3f}, FID {metrics['fid']:.2f}, recall {metrics['recall']:.2f}", flush=True)
        return {"recipe": name, "config": config, "overrides": overrides, "steps": steps, "train_wall_min": wall / 60,
                "train_cpu_min": cpu / 60, "cas": cas, "real": real_acc, "cas_over_real": cas / real_acc,
                "fid": metrics["fid"], "precision": metrics["precision"], "recall": metrics["recall"],
                "recall_class_min": metrics.get("recall_class_min"), "grid": str(run_dir / "samples" / f"step_{steps:08d}.png")}

    # Threads only wait on the gandist processes; each of those runs one CPU thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(measure, range(len(names)), names))

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    lines = [f"# Recipes on the built-in digits at equal training time ({args.minutes:g} CPU minutes each, one thread, {stamp})", "",
             f"Real-data classifier accuracy (resnet8, {args.classify_steps} steps): {real_acc:.3f}. CAS: the same classifier "
             f"trained on {args.per_class * 10:,} synthetic images ({args.per_class} per class), tested on the real test split. FID, recall: in the "
             "domain classifier's features (not comparable with Inception FID). Rerun: "
             f"`python benchmarks/recipes_digits.py --work DIR --minutes {args.minutes:g}`.", "",
             "| recipe | steps | CAS/real | CAS | FID | precision | recall | min class recall | train wall min | train CPU min |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['steps']} | {r['cas_over_real']:.3f} | {r['cas']:.3f} | {r['fid']:.2f} | "
                     f"{r['precision']:.2f} | {r['recall']:.2f} | {r['recall_class_min'] or 0:.2f} | {r['train_wall_min']:.1f} | {r['train_cpu_min']:.1f} |")
    (args.out / "recipes_digits.md").write_text("\n".join(lines) + "\n")
    (args.out / "recipes_digits.json").write_text(json.dumps({"minutes": args.minutes, "real": real_acc, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out / 'recipes_digits.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
