"""The protocols that measure whether synthetic images help a classifier: ``real``, ``cas``
(Ravuri & Vinyals, 2019), ``mix`` and ``lowdata``.

Every accuracy is measured on a held-out *real* test split; every setting gets the same
optimizer-step budget, so settings differ only in their data. With a validation split (real
images the classifiers never train on, carved from the training data), each run keeps its
weights that score best on it, and the test split is read once per run, for the report: no
choice is ever made on test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from gandist.classification.classifiers import ResNet
from gandist.classification.training import ClassifierSettings, LabelledImages, accuracy, train_classifier
from gandist.errors import BadInputError

PROTOCOLS = ("real", "cas", "mix", "lowdata")


# Protocols -----------------------------------------------------------------------------------


@dataclass
class ProtocolPlan:
    protocols: list[str]
    seeds: int = 3
    real_fractions: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.25, 1.0])
    synthetic_ratios: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])

    def num_runs(self, has_synthetic: bool) -> int:
        """Classifiers the plan trains: settings x seeds."""
        per_protocol = {"real": 1, "cas": 1, "mix": len(self.synthetic_ratios),
                        "lowdata": len(self.real_fractions) * (3 if has_synthetic else 2)}
        return sum(per_protocol[p] for p in self.protocols) * self.seeds

    def validate(self, has_synthetic: bool) -> None:
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise BadInputError(f"--protocol: unknown protocol {unknown[0] if unknown else ''!r}; allowed values: {', '.join(PROTOCOLS)}")
        needs = [p for p in self.protocols if p in ("cas", "mix")]
        if needs and not has_synthetic:
            raise BadInputError(f"--protocol {','.join(needs)} needs labelled synthetic data: pass --synthetic SHARDS (made by gandist synth)")
        if self.seeds < 1:
            raise BadInputError(f"--seeds: must be >= 1 (got {self.seeds})")
        for f in self.real_fractions:
            if not 0 < f <= 1:
                raise BadInputError(f"--real-fraction: each fraction must be in (0, 1], got {f}")
        for r in self.synthetic_ratios:
            if r < 0:
                raise BadInputError(f"--synthetic-ratio: each ratio must be >= 0, got {r}")


def lowdata_rng(seed: int) -> np.random.Generator:
    """The generator of the low-data protocol's real subset for ``seed`` (also the labelled subset
    of a semi-supervised run with that seed, so both learn from the same labels)."""
    return np.random.default_rng(2000 + seed)


def stratified_subset(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``fraction`` of each class (at least one image per class)."""
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(1, int(round(fraction * len(idx))))
        picked.append(rng.choice(idx, n, replace=False))
    return np.sort(np.concatenate(picked))


# Fixed forever: the carved validation split must not move between runs of one study.
VALIDATION_SEED = 20261206


def carve_validation(train: LabelledImages, fraction: float) -> tuple[LabelledImages, LabelledImages]:
    """(rest, validation): a class-stratified, seeded ``fraction`` of ``train`` held out."""
    val_index = stratified_subset(train.labels, fraction, np.random.default_rng(VALIDATION_SEED))
    rest = np.setdiff1d(np.arange(len(train)), val_index)
    if len(rest) == 0:
        raise BadInputError(f"--val-fraction {fraction:g}: leaves no training images in {train.source}")
    return train.subset(rest), LabelledImages(train.images[val_index], train.labels[val_index], train.class_names,
                                              f"validation part of {train.source}")


def check_compatible(real: LabelledImages, other: LabelledImages) -> None:
    if real.images.shape[1:] != other.images.shape[1:]:
        raise BadInputError(
            f"{other.source}: images are {tuple(other.images.shape[1:])} (C x H x W) but {real.source} has {tuple(real.images.shape[1:])}"
        )
    if real.class_names and other.class_names and list(real.class_names) != list(other.class_names):
        raise BadInputError(f"{other.source}: class names {other.class_names} differ from {real.source}'s {real.class_names}")


def _concat(*parts: LabelledImages, source: str) -> LabelledImages:
    return LabelledImages(
        np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]), parts[0].class_names, source
    )


def run_protocols(
    train: LabelledImages,
    test: LabelledImages,
    synthetic: LabelledImages | None,
    plan: ProtocolPlan,
    settings: ClassifierSettings,
    *,
    num_classes: int,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
    on_result: Callable[[str, str, int, float], None] | None = None,
    progress: bool = False,
    val: LabelledImages | None = None,
) -> tuple[dict[str, Any], ResNet | None]:
    """Run every protocol x setting x seed. Returns (report keyed by protocol, then setting, with
    ``accuracy_mean``/``accuracy_std``/``accuracies``/``num_train``, and with ``val`` also
    ``val_accuracy_mean`` and the ``selected_steps``; the classifier of the first seed of
    ``real``, or None)."""
    plan.validate(synthetic is not None)
    check_compatible(train, test)
    if val is not None:
        check_compatible(train, val)
    if synthetic is not None:
        check_compatible(train, synthetic)
        if len(np.unique(synthetic.labels)) < 2:
            raise BadInputError(f"{synthetic.source}: synthetic data must be labelled with several classes for cas/mix")
    report: dict[str, Any] = {}
    domain_model: ResNet | None = None
    from gandist.progress import print_around, progress_bar

    # One bar over every optimizer step of every classifier this study trains, so the ETA covers
    # the whole study (the longest step of the digits path), not one classifier.
    bar = progress_bar(plan.num_runs(synthetic is not None) * settings.steps, "classify", unit="step", enabled=progress)
    log = print_around(bar, log)

    def run(protocol: str, setting: str, make_data: Callable[[int], LabelledImages], augment: bool, extra: dict) -> None:
        nonlocal domain_model
        accs, sizes, selections = [], [], []
        for seed in range(plan.seeds):
            data = make_data(seed)
            start = time.perf_counter()
            model = train_classifier(data, num_classes, settings, seed=seed, augment=augment, device=device,
                                     on_step=lambda step, loss: bar.update(1), select_on=val, on_selected=selections.append)
            acc = accuracy(model, test, device)
            accs.append(acc)
            sizes.append(len(data))
            chosen = f", kept step {selections[-1].step} (val {selections[-1].val_accuracy:.4f})" if val is not None else ""
            log(f"{protocol:8s} {setting:28s} seed {seed}: accuracy {acc:.4f} ({len(data)} train images{chosen}, {time.perf_counter() - start:.1f}s)")
            if on_result is not None:
                on_result(protocol, setting, seed, acc)
            if protocol == "real" and seed == 0:
                domain_model = model
        report.setdefault(protocol, {})[setting] = {
            "accuracy_mean": float(np.mean(accs)),
            "accuracy_std": float(np.std(accs)),
            "accuracies": accs,
            "num_train": int(np.mean(sizes)),
            **({"val_accuracy_mean": float(np.mean([s.val_accuracy for s in selections])),
                "selected_steps": [s.step for s in selections]} if val is not None else {}),
            **extra,
        }

    for protocol in plan.protocols:
        if protocol == "real":
            run("real", "real", lambda s: train, False, {})
        elif protocol == "cas":
            run("cas", "synthetic", lambda s: synthetic, False, {})
        elif protocol == "mix":
            for ratio in plan.synthetic_ratios:
                needed = int(round(ratio * len(train)))
                if needed > len(synthetic):
                    raise BadInputError(
                        f"--synthetic-ratio {ratio:g}: needs {needed} synthetic images ({ratio:g} x {len(train)} real) but {synthetic.source} has {len(synthetic)}; "
                        f"make more with gandist synth --per-class or lower the ratio"
                    )

                def mixed(seed: int, needed: int = needed) -> LabelledImages:
                    pick = np.random.default_rng(1000 + seed).choice(len(synthetic), needed, replace=False)
                    return _concat(train, synthetic.subset(pick), source="real+synthetic")

                run("mix", f"ratio={ratio:g}", mixed, False, {"synthetic_ratio": ratio})
        elif protocol == "lowdata":
            variants = [("real", False, False), ("real+classical_aug", True, False)]
            if synthetic is not None:
                variants.append(("real+synthetic", False, True))
            for fraction in plan.real_fractions:
                for name, augment, with_synth in variants:

                    def sub(seed: int, fraction: float = fraction, with_synth: bool = with_synth) -> LabelledImages:
                        part = train.subset(stratified_subset(train.labels, fraction, lowdata_rng(seed)))
                        return _concat(part, synthetic, source="real-subset+synthetic") if with_synth else part

                    run("lowdata", f"fraction={fraction:g}/{name}", sub, augment, {"real_fraction": fraction, "variant": name})
    bar.close()
    return report, domain_model


