"""GAN recipes on the development sets that are not the digits, chosen on validation, reported
on test, next to a plain PyTorch conditional DCGAN at equal CPU time.

For each set (``--sets``, built-in names: gray28, colour32, colour64, digits):
1. ``shards make --builtin SET`` for ``fit``, ``val`` and ``test`` (fit + val = train);
2. ``classify --protocol real`` on fit, weights chosen on val, scored on val and test: the
   real-data accuracy CAS is divided by, and the domain classifier for recall;
3. per recipe: ``train`` on fit (``--steps``), ``synth --per-class``, ``classify --protocol cas``
   (weights chosen on val), ``eval`` (recall, precision in the domain classifier's features);
4. ``plain``: ``benchmarks/plain_cgan.py`` for as many CPU seconds as the first recipe's
   training took, then the same synth size and classify.

The recipe with the best CAS/real on **val** is marked chosen; test figures are read for the
report only. Every process runs one CPU thread and ``--jobs`` of them run at once, so CPU time
is comparable across rows. Writes ``OUT/devsets_<date>.{md,json}``.

    python benchmarks/devsets.py --work /tmp/devsets --sets gray28,colour32 --jobs 2
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

# name -> train overrides. "default" must come first: the plain baseline gets its CPU time.
# From 28 px up gandist's defaults follow the size rule (gandist/size_defaults.py): spectral
# norm in D and batch 64, chosen from the rows of 2026-12-06 that set those keys by hand.
RECIPES: dict[str, list[str]] = {
    "default": [],
    "digits' defaults (batch 32 + BatchNorm D)": ["train.batch_size=32", "model.spectral_norm_d=auto"],
    "sn-d + batch 32": ["model.spectral_norm_d=on", "train.batch_size=32"],
    "default + translation": ["augment.policy=translation"],
    "default + hinge": ["loss.name=hinge"],
    "default + 6000 steps": ["train.steps=6000"],
}


def recipe_steps(overrides: list[str], default: int) -> int:
    """The steps a recipe trains: its own ``train.steps=`` when it sets one (it comes last and wins)."""
    return next((int(o.split("=", 1)[1]) for o in reversed(overrides) if o.startswith("train.steps=")), default)


def run(cmd: list, log: Path) -> tuple[float, float]:
    """Run ``cmd`` with one CPU thread; returns (wall seconds, CPU seconds of the child)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", GANDIST_NUM_THREADS="1")
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n")
        f.flush()
        proc = subprocess.Popen([str(c) for c in cmd], env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed; see {log}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def gandist(*args, log: Path) -> tuple[float, float]:
    return run([sys.executable, "-m", "gandist", *args], log)


def report(path: Path) -> dict:
    return json.loads((path / "classify_report.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="scratch directory (data, runs, reports)")
    p.add_argument("--sets", default="gray28,colour32", help="comma-separated built-in sets (default gray28,colour32)")
    p.add_argument("--recipes", default="", help=f"comma-separated recipe names (default all: {', '.join(RECIPES)})")
    p.add_argument("--steps", type=int, default=3000, help="GAN training steps per recipe (default 3000, gandist's default)")
    p.add_argument("--per-class", type=int, default=400, help="synthetic images per class (default 400)")
    p.add_argument("--classify-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=1, help="classifier seeds per CAS and real figure (default 1)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one CPU thread each (default 2)")
    p.add_argument("--no-plain", action="store_true", help="skip the plain PyTorch baseline")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args()
    names = [n.strip() for n in args.recipes.split(",") if n.strip()] or list(RECIPES)
    if any(n not in RECIPES for n in names):
        p.error(f"--recipes: known names are {list(RECIPES)}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GANDIST_CACHE", str(work / "cache"))
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    classify_common = ["--seeds", args.seeds, "--steps", args.classify_steps, "--no-progress"]

    def prepare(name: str) -> dict:
        log = work / f"log_{name}.txt"
        data = {split: work / "data" / f"{name}-{split}" for split in ("fit", "val", "test")}
        for split, path in data.items():
            if not (path / "manifest.json").is_file():
                gandist("shards", "make", "--builtin", name, "--split", split, "--out", path, "--no-progress", log=log)
        real_dir = work / "reports" / name / "real"
        if not (real_dir / "classify_report.json").is_file():
            gandist("classify", "--train", data["fit"], "--val", data["val"], "--test", data["test"], "--protocol", "real",
                    *classify_common, "--out", real_dir, log=log)
        real = report(real_dir)["real"]["real"]
        return {"data": data, "real_val": real["val_accuracy_mean"], "real_test": real["accuracy_mean"],
                "domain": real_dir / "domain_classifier.safetensors"}

    def score(name: str, tag: str, synth: Path, ctx: dict, log: Path) -> dict:
        out = work / "reports" / name / tag
        gandist("classify", "--train", ctx["data"]["fit"], "--val", ctx["data"]["val"], "--test", ctx["data"]["test"],
                "--synthetic", synth, "--protocol", "cas", *classify_common, "--out", out, log=log)
        cas = report(out)["cas"]["synthetic"]
        return {"cas_val": cas["val_accuracy_mean"], "cas_test": cas["accuracy_mean"],
                "cas_over_real_val": cas["val_accuracy_mean"] / ctx["real_val"],
                "cas_over_real_test": cas["accuracy_mean"] / ctx["real_test"]}

    def recipe(name: str, recipe_name: str, ctx: dict) -> dict:
        tag = "r" + str(list(RECIPES).index(recipe_name))
        log = work / f"log_{name}_{tag}.txt"
        run_dir = work / "runs" / name / tag
        wall, cpu = gandist("train", "--run-dir", run_dir, f"data.path={ctx['data']['fit']}", f"train.steps={args.steps}",
                            "log.progress=false", *RECIPES[recipe_name], log=log)
        steps = recipe_steps(RECIPES[recipe_name], args.steps)
        synth = work / "synth" / name / tag
        if not (synth / "manifest.json").is_file():
            gandist("synth", "--run-dir", run_dir, "--per-class", args.per_class, "--out", synth, "--no-progress", log=log)
        row = {"set": name, "recipe": recipe_name, "overrides": RECIPES[recipe_name], "steps": steps,
               "train_wall_min": wall / 60, "train_cpu_min": cpu / 60, **score(name, tag, synth, ctx, log),
               "grid": str(run_dir / "samples" / f"step_{steps:08d}.png")}
        eval_json = work / "reports" / name / tag / "eval.json"
        gandist("eval", "--run-dir", run_dir, f"metrics.classifier={ctx['domain']}", "--out", eval_json, log=log)
        metrics = json.loads(eval_json.read_text())["metrics"]
        row.update(precision=metrics["precision"], recall=metrics["recall"], recall_class_min=metrics.get("recall_class_min"))
        print(f"{name} / {recipe_name}: CAS/real val {row['cas_over_real_val']:.3f} test {row['cas_over_real_test']:.3f}, "
              f"recall {row['recall']:.2f}, {row['train_cpu_min']:.1f} CPU min", flush=True)
        return row

    def plain(name: str, ctx: dict, cpu_seconds: float) -> dict:
        log = work / f"log_{name}_plain.txt"
        synth = work / "synth" / name / "plain"
        if not (synth / "manifest.json").is_file():
            run([sys.executable, REPO / "benchmarks" / "plain_cgan.py", "--train", ctx["data"]["fit"], "--out", synth,
                 "--per-class", args.per_class, "--cpu-seconds", round(cpu_seconds, 1)], log)
        info = json.loads((synth / "plain_cgan.json").read_text())
        row = {"set": name, "recipe": "plain PyTorch cGAN (baseline)", "overrides": [], "steps": info["steps"],
               "train_wall_min": info["train_wall_sec"] / 60, "train_cpu_min": info["train_cpu_sec"] / 60,
               **score(name, "plain", synth, ctx, log), "precision": None, "recall": None, "recall_class_min": None, "grid": ""}
        print(f"{name} / plain: CAS/real val {row['cas_over_real_val']:.3f} test {row['cas_over_real_test']:.3f}, "
              f"{info['steps']} steps", flush=True)
        return row

    rows: list[dict] = []
    contexts: dict[str, dict] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, ctx in zip(sets, pool.map(prepare, sets)):
            contexts[name] = ctx
        futures = {(s, r): pool.submit(recipe, s, r, contexts[s]) for s in sets for r in names}
        plains = {}
        for s in sets:
            if not args.no_plain:
                first = futures[(s, names[0])].result()
                plains[s] = pool.submit(plain, s, contexts[s], first["train_cpu_min"] * 60)
        for s in sets:
            rows += [futures[(s, r)].result() for r in names]
            if s in plains:
                rows.append(plains[s].result())

    stamp = time.strftime("%Y-%m-%d")
    lines = [f"# GAN recipes on the development sets ({stamp}): chosen on val, reported on test", "",
             f"Each GAN trains {args.steps} steps (unless its row says otherwise) on the set's `fit` split (one CPU thread, {args.jobs} runs at once); "
             f"`synth --per-class {args.per_class}`; a resnet8 ({args.classify_steps} steps, {args.seeds} seed(s)) trained on the "
             "synthetic images keeps its weights that score best on `val`; CAS/real divides its accuracy by that of the same "
             "classifier trained on `fit`. The chosen row is the best CAS/real on val; test was read once per classifier, for this "
             "table. Recall and precision: `gandist eval` in the domain classifier's features. The plain baseline trains for the "
             "CPU time of the first row.", "",
             f"Rerun: `python benchmarks/devsets.py --work DIR --sets {','.join(sets)} --jobs {args.jobs}`", ""]
    for s in sets:
        ctx = contexts[s]
        set_rows = [r for r in rows if r["set"] == s]
        best = max((r for r in set_rows if r["recall"] is not None), key=lambda r: r["cas_over_real_val"])
        lines += [f"## {s}", "", f"Real-data classifier: val {100 * ctx['real_val']:.1f} %, test {100 * ctx['real_test']:.1f} %.", "",
                  "| recipe | steps | train CPU min | CAS/real val | CAS/real test | CAS test | recall | min class recall | precision |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in set_rows:
            mark = " (chosen)" if r is best else ""
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {r['recipe']}{mark} | {r['steps']} | {r['train_cpu_min']:.1f} | {r['cas_over_real_val']:.3f} | "
                         f"{r['cas_over_real_test']:.3f} | {100 * r['cas_test']:.1f} % | {fmt(r['recall'])} | {fmt(r['recall_class_min'])} | {fmt(r['precision'])} |")
        lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / f"devsets_{stamp}.md"
    md.write_text("\n".join(lines))
    (args.out / f"devsets_{stamp}.json").write_text(json.dumps({"steps": args.steps, "per_class": args.per_class, "rows": rows,
        "real": {s: {k: v for k, v in c.items() if k.startswith("real")} for s, c in contexts.items()}}, indent=1, default=str) + "\n")
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
