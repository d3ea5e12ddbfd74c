"""Summarise a low-data classify report with semi-supervised runs: per labelled fraction, the
real-only, real + classical augmentation and semi-supervised GAN accuracies (mean ± std over
seeds) and the gain of the semi-supervised D over the better baseline, as a Markdown table.
Usage: python benchmarks/semisup_summary.py REPORT.json"""

from __future__ import annotations

import json
import sys


def summary(report: dict) -> str:
    rows: dict[float, dict[str, dict]] = {}
    for r in report["lowdata"].values():
        rows.setdefault(r["real_fraction"], {})[r["variant"]] = r
    lines = ["| labelled fraction | labelled images | real only | real + classical aug. | semi-supervised GAN | gain over the better baseline |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]

    def cell(r):
        return f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} %" if r else "–"

    for f in sorted(rows):
        v = rows[f]
        real, aug, semi = v.get("real"), v.get("real+classical_aug"), v.get("semi-supervised GAN")
        base = max((x["accuracy_mean"] for x in (real, aug) if x), default=None)
        gain = f"{100 * (semi['accuracy_mean'] - base):+.1f} points" if semi and base is not None else "–"
        n = (semi or real or aug)["num_train"]
        lines.append(f"| {f:g} | {n} | {cell(real)} | {cell(aug)} | {cell(semi)} | {gain} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summary(json.loads(open(sys.argv[1]).read())), end="")
