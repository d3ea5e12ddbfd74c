"""D's accuracy on a validation split during a semi-supervised run (``eval.val_path``).

Every ``eval.val_every_steps`` steps (and at the last step) each rank classifies its slice of the
validation images with D in eval mode (BatchNorm on its running statistics, as ``gandist eval
--test`` classifies) and the correct counts are summed over ranks. The curve goes to TensorBoard
(``eval/val_accuracy``) and to ``RUN_DIR/val_accuracy.json`` and ``val_accuracy.png``, written
by rank zero. The validation split is never the test split: it is what a user may look at while
choosing settings or a step; the test split stays for the final figure.

``val_accuracy.json``::

    {"format": "gandist-val-curve-v1", "val": "data/digits-val", "num_val": 144,
     "points": [{"step": 100, "accuracy": 0.71}, ...], "best": {"step": 900, "accuracy": 0.93}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gandist.errors import DataError

VAL_FILE = "val_accuracy.json"
VAL_PLOT = "val_accuracy.png"
FORMAT = "gandist-val-curve-v1"


@dataclass
class ValidationCurve:
    """The validation images (uint8 N x C x H x W, labels N) and the accuracies measured so far."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    points: list[dict[str, Any]] = field(default_factory=list)
    """[{"step": int, "accuracy": float}], in step order."""

    @torch.no_grad()
    def measure(self, d: torch.nn.Module, group, step: int, *, batch_size: int = 500) -> float:
        """D's accuracy on the whole validation split (every rank classifies its slice; the
        counts are summed), appended to the curve as the point of ``step``."""
        from gandist.engine.process_group import rank_slice
        from gandist.grid import to_unit_range

        start, stop, _ = rank_slice(len(self.labels), 1, group.rank, group.world_size)
        was_training = d.training
        d.eval()
        dtype = next(d.parameters()).dtype  # ZeRO under bf16 keeps D's weights in bf16
        correct = 0
        try:
            for i in range(start, stop, batch_size):
                j = min(i + batch_size, stop)
                x = to_unit_range(torch.from_numpy(self.images[i:j]).to(group.device)).to(dtype)
                with group.autocast():
                    pred = d(x).float().argmax(1).cpu()
                correct += int((pred == torch.from_numpy(self.labels[i:j])).sum())
        finally:
            d.train(was_training)
        total = group.reduce_sum(torch.tensor([float(correct)], device=group.device)).item()
        acc = total / len(self.labels)
        self.points = [p for p in self.points if p["step"] < step] + [{"step": step, "accuracy": acc}]
        return acc

    def record(self) -> dict[str, Any]:
        best = max(self.points, key=lambda p: (p["accuracy"], -p["step"]), default=None)  # earliest on a tie
        return {"format": FORMAT, "val": self.source, "num_val": int(len(self.labels)), "points": list(self.points),
                "best": best}

    def save(self, run_dir: Path) -> None:
        """``val_accuracy.json`` and its plot ``val_accuracy.png`` in ``run_dir`` (rank zero calls it)."""
        from gandist.classification.plots import save_panels, val_curve_panel
        from gandist.fileio import atomic_write_text

        atomic_write_text(Path(run_dir) / VAL_FILE, json.dumps(self.record(), indent=1) + "\n")
        save_panels([val_curve_panel({"D": self.points}, f"semi-supervised D: accuracy on {self.source}")],
                    Path(run_dir) / VAL_PLOT)


def read_curve(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``val_accuracy.json`` of a run, or None when the run measured no validation split."""
    path = Path(run_dir) / VAL_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the validation curve: {e}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("points"), list):
        raise DataError(f"{path}: not a gandist validation-curve file (format {FORMAT})")
    return record


def setup_validation(cfg, run_dir: Path, train_info, spec, class_names: list[str], *, start_step: int) -> ValidationCurve:
    """The validation split of ``eval.val_path`` at D's image size, checked against the training
    classes and shards; a resumed run keeps the points it measured up to ``start_step``."""
    from gandist.classification.labelled_shards import load_labelled
    from gandist.errors import BadInputError

    path = Path(cfg.eval.val_path)
    if not path.is_dir():
        raise DataError(f"eval.val_path: not a shard directory: {path}")
    try:
        val, info = load_labelled(path, "eval.val_path", image_size=spec.image_size, channels=spec.channels)
    except BadInputError as e:
        raise DataError(str(e)) from None
    if info.manifest_sha256 == train_info.manifest_sha256:
        raise DataError(f"eval.val_path: {path} holds the training shards (data.path); use a split D never trains on, "
                        "e.g. shards make --builtin NAME --split val with data.path of --split fit")
    if list(val.class_names) != list(class_names):
        raise DataError(f"eval.val_path: {path} has classes {val.class_names}, the training shards {list(class_names)}")
    old = read_curve(run_dir)
    points = [p for p in old["points"] if p["step"] <= start_step] if old and start_step else []
    return ValidationCurve(val.images, val.labels, str(path), points)
