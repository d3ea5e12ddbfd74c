"""Classifier training on real, synthetic and mixed data, and the protocols that measure whether
synthetic images help: ``real``, ``cas`` (Ravuri & Vinyals, 2019), ``mix`` and ``lowdata``.

Every accuracy is measured on a held-out *real* test split. Images arrive as uint8 N x C x H x W
with int64 labels; the classifier sees them scaled to [-1, 1] (the generator's range).
Training budgets are counted in optimizer steps, not epochs, so a 5% subset and the full set get
the same compute and settings differ only in their data.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from gandist.classifiers import ResNet, build_classifier
from gandist.errors import BadInputError, CheckpointError

PROTOCOLS = ("real", "cas", "mix", "lowdata")


@dataclass
class ClassifierSettings:
    arch: str = "resnet8"
    """Classifier architecture (``gandist.classifiers``)."""
    steps: int = 300
    """Optimizer steps per training run (same for every setting)."""
    batch_size: int = 64
    """Images per optimizer step."""
    lr: float = 0.05
    """Peak SGD learning rate (Nesterov momentum 0.9, cosine decay to 0)."""
    weight_decay: float = 5e-4
    """SGD weight decay."""
    max_shift_px: int = -1
    """Classical augmentation: random translation by up to this many pixels; -1: image side / 8."""


@dataclass
class LabelledImages:
    """An in-memory labelled image set."""

    images: np.ndarray  # uint8, N x C x H x W
    labels: np.ndarray  # int64, N
    class_names: list[str] = field(default_factory=list)
    source: str = ""  # where it came from, for reports and errors

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise BadInputError(f"{self.source or 'images'}: expected uint8 N x C x H x W images, got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise BadInputError(f"{self.source}: {len(self.images)} images but {len(self.labels)} labels")
        # Canonical strides: a transposed NHWC array with C=1 counts as contiguous to numpy and
        # torch but takes another conv kernel path, whose rounding changes the trained weights.
        self.images = self.images.copy(order="C")
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "LabelledImages":
        return LabelledImages(self.images[index], self.labels[index], self.class_names, self.source)


# Training and testing one classifier ----------------------------------------------------------


def to_model_input(images_uint8: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 B x C x H x W -> float in [-1, 1]."""
    x = torch.as_tensor(images_uint8).to(device)
    return x.float().div_(127.5).sub_(1.0)


def random_shift(x_bchw: torch.Tensor, max_shift_px: int, gen: torch.Generator) -> torch.Tensor:
    """Classical augmentation: translate each image by up to ``max_shift_px`` in x and y,
    filling with the border value (edge padding keeps a dark digit background dark)."""
    if max_shift_px <= 0:
        return x_bchw
    b, _, h, w = x_bchw.shape
    p = max_shift_px
    padded = F.pad(x_bchw, (p, p, p, p), mode="replicate")
    dx = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def train_classifier(
    data: LabelledImages,
    num_classes: int,
    settings: ClassifierSettings,
    *,
    seed: int,
    augment: bool = False,
    device: torch.device | str = "cpu",
    on_step: Callable[[int, float], None] | None = None,
) -> ResNet:
    """Train ``settings.arch`` on ``data`` for ``settings.steps`` steps; returns it in eval mode."""
    if len(data) == 0:
        raise BadInputError(f"{data.source}: no training images")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    channels = data.images.shape[1]
    model = build_classifier(settings.arch, channels, num_classes, data.images.shape[-1]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, nesterov=True, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / settings.steps)))
    shift = settings.max_shift_px if settings.max_shift_px >= 0 else data.images.shape[-1] // 8
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels.astype(np.int64))
    batch = min(settings.batch_size, len(data))
    model.train()
    order = torch.randperm(len(data), generator=gen)
    cursor = 0
    for step in range(settings.steps):
        if cursor + batch > len(order):  # new epoch: reshuffle
            order, cursor = torch.randperm(len(data), generator=gen), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        x = to_model_input(images[idx], device)
        if augment:
            x = random_shift(x, shift, gen)
        loss = F.cross_entropy(model(x), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(step, float(loss))
    return model.eval()


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images_uint8: np.ndarray, *, batch_size: int = 512, device: torch.device | str = "cpu") -> np.ndarray:
    model.eval()
    out = [model(to_model_input(images_uint8[i : i + batch_size], device)).float().cpu() for i in range(0, len(images_uint8), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def accuracy(model: torch.nn.Module, data: LabelledImages, device: torch.device | str = "cpu") -> float:
    pred = predict_logits(model, data.images, device=device).argmax(axis=1)
    return float((pred == data.labels).mean())


# Saving a classifier (the domain classifier used as a feature extractor) -----------------------


def save_classifier(model: ResNet, path: str | Path, *, arch: str, channels: int, image_size: int, class_names: list[str], train_source: str, test_accuracy: float) -> None:
    """Weights as safetensors, with the facts needed to rebuild it in the file's metadata."""
    meta = {
        "format": "gandist-classifier-v1",
        "arch": arch,
        "channels": str(channels),
        "image_size": str(image_size),
        "num_classes": str(model.head.out_features),
        "class_names": json.dumps(class_names),
        "train_source": train_source,
        "test_accuracy": f"{test_accuracy:.6f}",
    }
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(path)


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[ResNet, dict[str, Any]]:
    """Inverse of ``save_classifier``: (model in eval mode, metadata with typed values)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"classifier file not found: {path} (make one with: gandist classify --protocol real ... --out DIR; it writes DIR/domain_classifier.safetensors)")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    if meta.get("format") != "gandist-classifier-v1":
        raise CheckpointError(f"{path}: not a gandist classifier (metadata format {meta.get('format')!r})")
    info = {
        "arch": meta["arch"],
        "channels": int(meta["channels"]),
        "image_size": int(meta["image_size"]),
        "num_classes": int(meta["num_classes"]),
        "class_names": json.loads(meta["class_names"]),
        "train_source": meta.get("train_source", ""),
        "test_accuracy": float(meta.get("test_accuracy", "nan")),
    }
    model = build_classifier(info["arch"], info["channels"], info["num_classes"], info["image_size"])
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval(), info


# Protocols -----------------------------------------------------------------------------------


@dataclass
class ProtocolPlan:
    protocols: list[str]
    seeds: int = 3
    real_fractions: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.25, 1.0])
    synthetic_ratios: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])

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


def stratified_subset(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``fraction`` of each class (at least one image per class)."""
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(1, int(round(fraction * len(idx))))
        picked.append(rng.choice(idx, n, replace=False))
    return np.sort(np.concatenate(picked))


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
) -> tuple[dict[str, Any], ResNet | None]:
    """Run every protocol x setting x seed. Returns (report keyed by protocol, then setting, with
    ``accuracy_mean``/``accuracy_std``/``accuracies``/``num_train``; the classifier of the first
    seed of ``real``, or None)."""
    plan.validate(synthetic is not None)
    check_compatible(train, test)
    if synthetic is not None:
        check_compatible(train, synthetic)
        if len(np.unique(synthetic.labels)) < 2:
            raise BadInputError(f"{synthetic.source}: synthetic data must be labelled with several classes for cas/mix")
    report: dict[str, Any] = {}
    domain_model: ResNet | None = None

    def run(protocol: str, setting: str, make_data: Callable[[int], LabelledImages], augment: bool, extra: dict) -> None:
        nonlocal domain_model
        accs, sizes = [], []
        for seed in range(plan.seeds):
            data = make_data(seed)
            start = time.perf_counter()
            model = train_classifier(data, num_classes, settings, seed=seed, augment=augment, device=device)
            acc = accuracy(model, test, device)
            accs.append(acc)
            sizes.append(len(data))
            log(f"{protocol:8s} {setting:28s} seed {seed}: accuracy {acc:.4f} ({len(data)} train images, {time.perf_counter() - start:.1f}s)")
            if on_result is not None:
                on_result(protocol, setting, seed, acc)
            if protocol == "real" and seed == 0:
                domain_model = model
        report.setdefault(protocol, {})[setting] = {
            "accuracy_mean": float(np.mean(accs)),
            "accuracy_std": float(np.std(accs)),
            "accuracies": accs,
            "num_train": int(np.mean(sizes)),
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
                        part = train.subset(stratified_subset(train.labels, fraction, np.random.default_rng(2000 + seed)))
                        return _concat(part, synthetic, source="real-subset+synthetic") if with_synth else part

                    run("lowdata", f"fraction={fraction:g}/{name}", sub, augment, {"real_fraction": fraction, "variant": name})
    return report, domain_model


# Report ----------------------------------------------------------------------------------------


def report_markdown(report: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# gandist classify report",
        "",
        f"Test accuracy on the held-out real split `{meta.get('test', '')}` ({meta.get('num_test', '?')} images), "
        f"mean ± std over {meta.get('seeds', '?')} seeds; classifier `{meta.get('arch', '')}`, {meta.get('steps', '?')} steps of batch {meta.get('batch_size', '?')}.",
        "",
        "| protocol | setting | train images | accuracy |",
        "| --- | --- | ---: | ---: |",
    ]
    for protocol, settings in report.items():
        if protocol == "meta":
            continue
        for setting, r in settings.items():
            lines.append(f"| {protocol} | {setting} | {r['num_train']} | {100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} % |")
    if meta.get("command"):
        lines += ["", "Command:", "", "```", meta["command"], "```"]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: dict[str, Any], meta: dict[str, Any]) -> None:
    """``classify_report.json`` (protocol -> setting -> accuracy_mean/std, plus ``meta``),
    ``classify_report.md`` and ``classify_report.png``."""
    from gandist.plotting import plot_classify_report

    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**report, "meta": meta}
    _atomic_write(out_dir / "classify_report.json", json.dumps(data, indent=2) + "\n")
    _atomic_write(out_dir / "classify_report.md", report_markdown(report, meta))
    plot_classify_report(report, out_dir / "classify_report.png")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def settings_dict(settings: ClassifierSettings) -> dict[str, Any]:
    return asdict(settings)
