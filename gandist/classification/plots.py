"""Line charts as PNG, drawn with Pillow (a core dependency) so reports need no plotting library."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from gandist.fileio import atomic_write_with

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
_PANEL_W, _PANEL_H = 520, 380
_MARGIN_L, _MARGIN_R, _MARGIN_T, _MARGIN_B = 60, 20, 36, 50
_MAX_X_TICKS = 8


def line_panel(
    title: str,
    x_label: str,
    series: dict[str, list[tuple[float, float, float]]],
    references: dict[str, float],
    *,
    log_x: bool = False,
) -> Image.Image:
    """One chart: each series is [(x, y_mean, y_std)], drawn as a line with ±std bars;
    references are horizontal dashed lines. y is accuracy in [0, 1], shown in percent."""
    img = Image.new("RGB", (_PANEL_W, _PANEL_H), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x0, y0, x1, y1 = _MARGIN_L, _MARGIN_T, _PANEL_W - _MARGIN_R, _PANEL_H - _MARGIN_B
    xs = [p[0] for pts in series.values() for p in pts] or [0.0, 1.0]
    ys = [p[1] - p[2] for pts in series.values() for p in pts] + [p[1] + p[2] for pts in series.values() for p in pts]
    ys += list(references.values())
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    x_lo, x_hi = fx(min(xs)), fx(max(xs))
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    pad = 0.06 * (x_hi - x_lo)  # keep end points off the frame
    x_lo, x_hi = x_lo - pad, x_hi + pad
    y_lo = max(0.0, math.floor((min(ys, default=0.0) - 0.02) * 10) / 10)
    y_hi = min(1.0, math.ceil((max(ys, default=1.0) + 0.02) * 10) / 10)
    if y_hi <= y_lo:
        y_lo, y_hi = 0.0, 1.0

    def px(x: float, y: float) -> tuple[float, float]:
        return (x0 + (fx(x) - x_lo) / (x_hi - x_lo) * (x1 - x0), y1 - (y - y_lo) / (y_hi - y_lo) * (y1 - y0))

    draw.rectangle([x0, y0, x1, y1], outline="black")
    draw.text((x0, 10), title, fill="black", font=font)
    draw.text(((x0 + x1) / 2 - 3 * len(x_label), y1 + 28), x_label, fill="black", font=font)
    for i in range(6):  # y grid in percent
        y = y_lo + (y_hi - y_lo) * i / 5
        _, yy = px(max(xs), y)
        draw.line([x0, yy, x1, yy], fill=(225, 225, 225))
        draw.text((8, yy - 6), f"{100 * y:.0f}%", fill="black", font=font)
    ticks = sorted(set(xs))
    if len(ticks) > _MAX_X_TICKS:  # a curve over many steps: label a few evenly spaced ones
        ticks = [ticks[round(i * (len(ticks) - 1) / (_MAX_X_TICKS - 1))] for i in range(_MAX_X_TICKS)]
    for x in ticks:
        xx, _ = px(x, y_lo)
        draw.line([xx, y1, xx, y1 + 4], fill="black")
        draw.text((xx - 10, y1 + 8), f"{x:g}", fill="black", font=font)
    legend_y = y0 + 6
    for i, (name, value) in enumerate(references.items()):
        colour = (120, 120, 120) if i == 0 else (180, 60, 60)
        _, yy = px(max(xs), value)
        for xs_ in range(int(x0), int(x1), 10):
            draw.line([xs_, yy, min(xs_ + 5, x1), yy], fill=colour, width=2)
        draw.text((x0 + 8, legend_y), f"- - {name}: {100 * value:.1f}%", fill=colour, font=font)
        legend_y += 14
    for i, (name, pts) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = sorted(pts)
        coords = [px(x, y) for x, y, _ in pts]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=2)
        for (x, y, s), (cx, cy) in zip(pts, coords):
            _, top = px(x, min(y_hi, y + s))
            _, bottom = px(x, max(y_lo, y - s))
            draw.line([cx, top, cx, bottom], fill=colour)
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
        draw.text((x0 + 8, legend_y), f"-- {name}", fill=colour, font=font)
        legend_y += 14
    return img


def plot_classify_report(report: dict[str, Any], path: Path) -> None:
    """Accuracy vs real fraction (``lowdata``) and vs synthetic ratio (``mix``), with the
    ``real`` and ``cas`` accuracies as reference lines."""
    refs = {}
    if "real" in report:
        refs["real (all real data)"] = report["real"]["real"]["accuracy_mean"]
    if "cas" in report:
        refs["CAS (synthetic only)"] = report["cas"]["synthetic"]["accuracy_mean"]
    panels = []
    if "lowdata" in report:
        series: dict[str, list] = {}
        for r in report["lowdata"].values():
            series.setdefault(r["variant"], []).append((r["real_fraction"], r["accuracy_mean"], r["accuracy_std"]))
        panels.append(line_panel("lowdata: test accuracy vs fraction of real training data", "real fraction (log scale)", series, refs, log_x=True))
    if "mix" in report:
        pts = [(r["synthetic_ratio"], r["accuracy_mean"], r["accuracy_std"]) for r in report["mix"].values()]
        panels.append(line_panel("mix: test accuracy vs synthetic:real ratio", "synthetic images per real image", {"real+synthetic": pts}, refs))
    curves = {f"{Path(run['run']).name} ({r['real_fraction']:g})": run["val_curve"]["points"]
              for r in report.get("lowdata", {}).values() for run in r.get("runs", []) if run.get("val_curve")}
    if curves:  # semi-supervised runs that measured D on a validation split (eval.val_path)
        panels.append(val_curve_panel(curves, "semi-supervised D: validation accuracy vs step"))
    if not panels:
        bars = {name: [(1.0, v, 0.0)] for name, v in refs.items()}
        panels.append(line_panel("test accuracy", "", bars, {}))
    save_panels(panels, path)


def val_curve_panel(curves: dict[str, list[dict[str, Any]]], title: str) -> Image.Image:
    """Accuracy over training steps: each curve is [{"step", "accuracy"}] (``val_accuracy.json``)."""
    series = {name: [(float(p["step"]), float(p["accuracy"]), 0.0) for p in points] for name, points in curves.items()}
    return line_panel(title, "training step", series, {})


def save_panels(panels: list[Image.Image], path: Path) -> None:
    """The panels side by side as one PNG."""
    out = Image.new("RGB", (_PANEL_W * len(panels), _PANEL_H), "white")
    for i, panel in enumerate(panels):
        out.paste(panel, (i * _PANEL_W, 0))
    atomic_write_with(path, lambda tmp: out.save(tmp, format="PNG"), fsync=False)
