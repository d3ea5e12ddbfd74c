"""``synth --min-confidence auto``: the filter threshold chosen on a validation split.

GaFi (Lampis et al., 2023, "Bridging the Gap: Enhancing the Utility of Synthetic Data via
Post-Processing Techniques") filters generated images by the domain classifier's confidence in
their conditioning class, refills what was dropped by drawing more (``generate_labelled`` does,
round by round), and tunes the threshold for the accuracy a classifier trained on the synthetic
set reaches on real data. Here each threshold of a small grid makes its synthetic set, a
classifier trained on it alone (CAS, ``train_classifier``) is scored on a validation split of real
labelled images the user supplies (never the test split), and the best score chooses; a tie goes
to the lower threshold (more of G's images kept).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from gandist.errors import BadInputError

# Imported by the CLI's parser: torch (through the classifier training) is imported when tuning runs.

#: The thresholds ``--min-confidence auto`` tries (0: keep every image, the unfiltered set).
AUTO_THRESHOLDS = (0.0, 0.5, 0.7, 0.9, 0.95)
#: Optimizer steps of each threshold's classifier by default (``ClassifierSettings.steps``, as classify).
DEFAULT_TUNE_STEPS = 300

Dataset = tuple[np.ndarray, np.ndarray, dict[str, Any]]  # uint8 images N x C x H x W, labels N, filter stats


def tune_min_confidence(
    make: Callable[[float], Dataset],
    val,
    num_classes: int,
    settings,
    group,
    *,
    thresholds: tuple[float, ...] = AUTO_THRESHOLDS,
    num_seeds: int = 1,
    val_name: str = "",
    log: Callable[[str], None] = lambda s: None,
) -> tuple[Dataset, dict[str, Any]]:
    """(the synthetic set of the chosen threshold, the tuning record for the manifest).

    ``make(t)`` runs on every rank (generation is collective) and raises ``BadInputError`` when a
    class cannot be filled at ``t``: that threshold is recorded as failed and skipped. Classifiers
    train on rank zero only; the choice is broadcast, so every rank returns the same set.
    ``val`` is a ``LabelledImages`` (``val_name``: what the record calls it), ``settings`` the
    ``ClassifierSettings`` of each classifier."""
    from gandist.classification.training import LabelledImages, accuracy, train_classifier

    candidates: list[dict[str, Any]] = []
    made: dict[int, Dataset] = {}  # every rank keeps each candidate's set until rank zero's choice arrives
    best: tuple[float, int] | None = None  # (val accuracy, index), known on rank zero
    for i, t in enumerate(thresholds):
        try:
            images, labels, stats = make(t)
        except BadInputError as e:
            candidates.append({"min_confidence": t, "val_accuracy": None, "error": str(e)})
            log(f"synth --min-confidence auto: {t:g} cannot fill every class ({e}); skipped")
            continue
        scores = []
        if group.is_main:
            data = LabelledImages(images, labels, list(val.class_names), f"synthetic images at --min-confidence {t:g}")
            for seed in range(num_seeds):
                clf = train_classifier(data, num_classes, settings, seed=seed)
                scores.append(accuracy(clf, val))
        score = float(np.mean(scores)) if scores else float("nan")
        candidates.append({"min_confidence": t, "val_accuracy": score, "val_accuracies": scores, **stats})
        log(f"synth --min-confidence auto: {t:g} kept {stats['accepted']}/{stats['generated']}; "
            f"val accuracy of its classifier {score:.4f}")
        made[i] = (images, labels, stats)
        if best is None or score > best[0]:  # strictly better: a tie keeps the lower threshold
            best = (score, i)
    if best is None:
        raise BadInputError(f"--min-confidence auto: no threshold of {list(thresholds)} filled every class; check the generator")
    chosen = group.broadcast_int(best[1])  # rank zero's scores decide for all ranks
    record = {
        "thresholds": list(thresholds),
        "chosen": thresholds[chosen],
        "chosen_on": "val",
        "val": val_name or val.source,
        "num_val": len(val),
        "classifier": {"arch": settings.arch, "steps": settings.steps, "batch_size": settings.batch_size, "num_seeds": num_seeds},
        "candidates": candidates,
    }
    return made[chosen], record
