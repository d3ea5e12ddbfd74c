"""Class-balanced labelled synthetic datasets from a conditional generator, generated on all
ranks in parallel and written as shards with a manifest (the format of ``gandist shards make``).

Optional filtering keeps only images that the domain classifier assigns to their conditioning
class with at least ``min_confidence`` probability (generated in rounds until every class is
full). Each round's noise depends only on the seed and the round, and the work is split at batch
boundaries, so the dataset is the same for any number of ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from gandist.engine.process_group import ProcessGroup
from gandist.errors import BadInputError
from gandist.metrics.evaluate import make_noise
from gandist.metrics.extractors import images_to_uint8, resize_uint8


@dataclass
class SynthOptions:
    per_class: int
    """Images per class."""
    truncation: float = 0.0
    """Resample latent entries with |z| above this (0: off)."""
    seed: int = 0
    """Noise seed: the same seed gives the same dataset."""
    batch_size: int = 250
    """Images per generator forward pass per rank."""
    min_confidence: float = 0.0
    """With a filter classifier: keep images whose conditioning class has at least this probability."""
    max_rounds: int = 50
    """Filtering: give up after this many generation rounds."""


@torch.no_grad()
def generate_labelled(
    G: torch.nn.Module,
    num_classes: int,
    z_dim: int,
    opts: SynthOptions,
    group: ProcessGroup,
    *,
    classifier: torch.nn.Module | None = None,
    classifier_image_size: int = 0,
    log: Callable[[str], None] = lambda s: None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(uint8 images N x C x H x W, int64 labels N, stats) with ``opts.per_class`` images of each
    class, ordered by class; identical on every rank."""
    if num_classes < 1:
        raise BadInputError(
            "synth --per-class: this run's generator is unconditional (trained without class labels), so its images have no labels; "
            "train with model.conditional=true on labelled data"
        )
    if opts.per_class < 1:
        raise BadInputError(f"--per-class: must be >= 1 (got {opts.per_class})")
    if classifier is None:
        images, labels, _ = _generate_round(G, num_classes, z_dim, opts, group, opts.per_class * num_classes, round_index=0,
                                            progress=progress)
        return images, labels, {"rounds": 1, "generated": len(labels), "accepted": len(labels)}
    kept_imgs: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    generated = accepted = 0
    for round_index in range(opts.max_rounds):
        missing = [opts.per_class - sum(len(a) for a in kept_imgs[c]) for c in range(num_classes)]
        if max(missing) <= 0:
            break
        # Every class gets the same draw per round (keeps rounds rank-independent and simple);
        # oversample by 2x the deficit of the worst class.
        n_round = num_classes * max(2 * max(missing), 16)
        images, labels, _ = _generate_round(G, num_classes, z_dim, opts, group, n_round, round_index, progress=progress)
        conf = _class_confidence(classifier, images, labels, classifier_image_size, group.device)
        keep = conf >= opts.min_confidence
        generated += len(labels)
        accepted += int(keep.sum())
        for c in range(num_classes):
            sel = images[keep & (labels == c)][: max(missing[c], 0)]
            if len(sel):
                kept_imgs[c].append(sel)
        log(f"synth round {round_index}: kept {int(keep.sum())}/{len(labels)} images with confidence >= {opts.min_confidence}")
    counts = [sum(len(a) for a in kept_imgs[c]) for c in range(num_classes)]
    if min(counts) < opts.per_class:
        worst = int(np.argmin(counts))
        raise BadInputError(
            f"--min-confidence {opts.min_confidence}: after {opts.max_rounds} rounds ({generated} images, {accepted} accepted) "
            f"class {worst} has only {counts[worst]} of {opts.per_class} images; lower --min-confidence or check the generator"
        )
    images = np.concatenate([np.concatenate(kept_imgs[c])[: opts.per_class] for c in range(num_classes)])
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), opts.per_class)
    return images, labels, {"rounds": round_index + 1, "generated": generated, "accepted": accepted}


def _generate_round(G, num_classes, z_dim, opts: SynthOptions, group: ProcessGroup, n: int, round_index: int,
                    progress: bool = False):
    # Seeds of different rounds are far apart so that their noise never overlaps.
    z_all, _ = make_noise(n, z_dim, 0, opts.seed * 1_000_003 + round_index, opts.truncation)
    y_all = torch.arange(n) * num_classes // n  # class blocks: n / num_classes of each class
    start, stop, slice_len = group.shard_range(n, opts.batch_size)
    device = next(G.parameters()).device
    out = []
    from gandist.progress import progress_bar

    # Rank zero's slice stands for all ranks: they run in step.
    with progress_bar(stop - start, f"synth round {round_index}" if round_index else "synth", unit="img",
                      enabled=progress and group.is_main) as bar:
        for i in range(start, stop, opts.batch_size):
            j = min(i + opts.batch_size, stop)
            out.append(images_to_uint8(G(z_all[i:j].to(device), y_all[i:j].to(device))).cpu())
            bar.update(j - i)
    probe_shape = out[0].shape[1:] if out else _probe_shape(G, z_dim, device)
    local = torch.cat(out) if out else torch.zeros((0, *probe_shape), dtype=torch.uint8)
    images = group.gather_rows(local, slice_len, n).numpy()
    return images, y_all.numpy().astype(np.int64), z_all


def _probe_shape(G, z_dim, device):
    return G(torch.zeros(1, z_dim, device=device), torch.zeros(1, dtype=torch.long, device=device)).shape[1:]


@torch.no_grad()
def _class_confidence(classifier, images: np.ndarray, labels: np.ndarray, image_size: int, device) -> np.ndarray:
    """Softmax probability the classifier gives each image's conditioning label."""
    probs = []
    for i in range(0, len(images), 500):
        x = resize_uint8(torch.from_numpy(images[i : i + 500]).to(device), image_size or images.shape[-1])
        logits = classifier(x.float().div(127.5).sub(1.0))
        probs.append(torch.softmax(logits.float(), dim=1).cpu())
    p = torch.cat(probs).numpy()
    return p[np.arange(len(labels)), labels]
