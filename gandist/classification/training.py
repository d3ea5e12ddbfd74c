"""Training and testing one image classifier, and saving it (the domain classifier that
evaluation uses as its feature extractor).

Images arrive as uint8 N x C x H x W with int64 labels; the classifier sees them scaled to
[-1, 1] (the generator's range). Budgets are counted in optimizer steps, not epochs, so a 5 %
subset and the full set get the same compute.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from gandist.classification.classifiers import ResNet, build_classifier
from gandist.errors import BadInputError, CheckpointError
from gandist.fileio import atomic_write_with
from gandist.weights_file import read_safetensors

PROTOCOLS = ("real", "cas", "mix", "lowdata")


@dataclass
class ClassifierSettings:
    arch: str = "resnet8"
    """Classifier architecture (``gandist.classification.classifiers``)."""
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


@dataclass
class Selection:
    """Which weights of one training run were kept, chosen on the validation split."""

    step: int
    """Optimizer steps done when the kept weights were measured."""
    val_accuracy: float
    """Their accuracy on the validation split."""


# Validation checks per training run: the kept weights are the best of these (early stopping
# without stopping: every run costs the same steps, so settings still differ only in data).
SELECTION_CHECKS = 10


def train_classifier(
    data: LabelledImages,
    num_classes: int,
    settings: ClassifierSettings,
    *,
    seed: int,
    augment: bool = False,
    device: torch.device | str = "cpu",
    on_step: Callable[[int, float], None] | None = None,
    select_on: LabelledImages | None = None,
    on_selected: Callable[[Selection], None] | None = None,
) -> ResNet:
    """Train ``settings.arch`` on ``data`` for ``settings.steps`` steps; returns it in eval mode.

    With ``select_on`` (a validation split, never the test split) the run measures its accuracy
    on it ``SELECTION_CHECKS`` times, evenly spaced, and returns the best of those weights
    (the earliest on a tie); ``on_selected`` receives which. Without it, the final weights."""
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
    checks = {round(settings.steps * (i + 1) / SELECTION_CHECKS) for i in range(SELECTION_CHECKS)} if select_on is not None else set()
    best: tuple[Selection, dict[str, torch.Tensor]] | None = None
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
            on_step(step, float(loss.detach()))
        if step + 1 in checks:
            val_acc = accuracy(model, select_on, device)  # puts the model in eval mode
            model.train()
            if best is None or val_acc > best[0].val_accuracy:
                best = Selection(step + 1, val_acc), {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best is not None:
        model.load_state_dict(best[1])
        if on_selected is not None:
            on_selected(best[0])
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


def save_classifier(model: torch.nn.Module, path: str | Path, *, arch: str, channels: int, image_size: int, class_names: list[str],
                    train_source: str, test_accuracy: float, extra_meta: dict[str, str] | None = None) -> None:
    """Weights as safetensors, with the facts needed to rebuild it in the file's metadata
    (``extra_meta``: more of them, for architectures outside the ResNet registry)."""
    meta = {**(extra_meta or {}),
        "format": "gandist-classifier-v1",
        "arch": arch,
        "channels": str(channels),
        "image_size": str(image_size),
        "num_classes": str(model.head.out_features),
        "class_names": json.dumps(class_names),
        "train_source": train_source,
        "test_accuracy": f"{test_accuracy:.6f}",
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_with(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[ResNet, dict[str, Any]]:
    """Inverse of ``save_classifier``: (model in eval mode, metadata with typed values)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"classifier file not found: {path} (make one with: gandist classify --protocol real ... --out DIR; it writes DIR/domain_classifier.safetensors)")
    state, meta = read_safetensors(path, "classifier file")
    if meta.get("format") != "gandist-classifier-v1":
        raise CheckpointError(f"{path}: not a gandist classifier (metadata format {meta.get('format')!r})")
    try:
        info = {
            "arch": meta["arch"],
            "channels": int(meta["channels"]),
            "image_size": int(meta["image_size"]),
            "num_classes": int(meta["num_classes"]),
            "class_names": json.loads(meta["class_names"]),
            "train_source": meta.get("train_source", ""),
            "test_accuracy": float(meta.get("test_accuracy", "nan")),
        }
        if not isinstance(info["class_names"], list) or not all(isinstance(n, str) for n in info["class_names"]):
            raise ValueError("class_names is not a list of strings")
        if info["arch"].startswith("gan-discriminator:"):  # a semi-supervised GAN's D (gandist export --classifier)
            from gandist.semisup.model import build_from_classifier_metadata

            model = build_from_classifier_metadata(meta)
        else:
            model = build_classifier(info["arch"], info["channels"], info["num_classes"], info["image_size"])
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: damaged gandist classifier metadata or weights: {type(e).__name__}: {str(e)[:300]}") from None
    return model.to(device).eval(), info



def settings_dict(settings: ClassifierSettings) -> dict[str, Any]:
    return asdict(settings)
