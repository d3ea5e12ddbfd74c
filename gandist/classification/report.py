"""The classify report: JSON (protocol -> setting -> accuracy), Markdown table and plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gandist.fileio import atomic_write_text

# Report ----------------------------------------------------------------------------------------


def report_markdown(report: dict[str, Any], meta: dict[str, Any]) -> str:
    with_val = bool(meta.get("val"))
    if with_val:
        splits = (f"Weights chosen on the validation split `{meta['val']}` ({meta.get('num_val', '?')} images: each classifier "
                  "keeps its best of 10 evenly spaced checks); the test split was read once per classifier, for these figures.")
    else:
        splits = "No validation split: each classifier's final weights, nothing chosen on any split."
    lines = [
        "# gandist classify report",
        "",
        f"Test accuracy on the held-out real split `{meta.get('test', '')}` ({meta.get('num_test', '?')} images), "
        f"mean ± std over {meta.get('seeds', '?')} seeds; classifier `{meta.get('arch', '')}`, {meta.get('steps', '?')} steps of batch {meta.get('batch_size', '?')}.",
        "",
        splits,
        "",
        "| protocol | setting | train images | " + ("val accuracy | " if with_val else "") + "test accuracy |",
        "| --- | --- | ---: | " + ("---: | " if with_val else "") + "---: |",
    ]
    for protocol, settings in report.items():
        if protocol == "meta":
            continue
        for setting, r in settings.items():
            val_cell = f"{100 * r['val_accuracy_mean']:.1f} % | " if with_val and "val_accuracy_mean" in r else ("- | " if with_val else "")
            lines.append(f"| {protocol} | {setting} | {r['num_train']} | {val_cell}{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} % |")
    if meta.get("command"):
        lines += ["", "Command:", "", "```", meta["command"], "```"]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: dict[str, Any], meta: dict[str, Any]) -> None:
    """``classify_report.json`` (protocol -> setting -> accuracy_mean/std, plus ``meta``),
    ``classify_report.md`` and ``classify_report.png``."""
    from gandist.classification.plots import plot_classify_report

    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**report, "meta": meta}
    atomic_write_text(out_dir / "classify_report.json", json.dumps(data, indent=2) + "\n")
    atomic_write_text(out_dir / "classify_report.md", report_markdown(report, meta))
    plot_classify_report(report, out_dir / "classify_report.png")
