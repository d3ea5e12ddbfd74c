"""Evaluate a generator against the real data on all ranks in parallel.

Every rank generates and embeds its slice of the samples; features are gathered to every rank
and the statistics are computed there from the full sets, so all ranks return the same numbers.
Slices are cut at multiples of the batch size, so every forward pass sees exactly the batches a
single process would: 1 process and N processes give identical features, hence identical metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from gandist.errors import BadInputError, DataError
from gandist.fileio import atomic_write_with
from gandist.metrics import math as M
from gandist.metrics.extractors import FeatureExtractor, build_extractor, images_to_uint8, resize_uint8

if TYPE_CHECKING:
    from gandist.engine.process_group import ProcessGroup


class EvalResult(dict):
    """Metric name -> value, plus the extractor that produced the numbers (they are comparable
    only between results of the same extractor)."""

    def __init__(self, values: dict[str, float], extractor: str, num_real: int, num_fake: int):
        super().__init__(values)
        self.extractor = extractor
        self.num_real = num_real
        self.num_fake = num_fake

    def to_json(self) -> dict[str, Any]:
        return {"extractor": self.extractor, "num_real": self.num_real, "num_generated": self.num_fake, "metrics": dict(self)}


def _progress(total: int, desc: str, enabled: bool):
    from gandist.progress import progress_bar

    return progress_bar(total, desc, unit="img", enabled=enabled, leave=False)


@torch.no_grad()
def embed_images(
    extractor: FeatureExtractor,
    images_uint8: np.ndarray,
    group: ProcessGroup,
    *,
    batch_size: int,
    image_size: int,
    progress: bool = False,
    desc: str = "embed real",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (N x F) and logits (N x K or None) of uint8 N x C x H x W images, every rank
    embedding its slice; every rank gets all rows in order."""
    n = len(images_uint8)
    start, stop, slice_len = group.shard_range(n, batch_size)
    feats, logits = [], []
    with _progress(stop - start, desc, progress and group.is_main) as bar:
        for i in range(start, stop, batch_size):
            x = torch.from_numpy(images_uint8[i : min(i + batch_size, stop)]).to(extractor.device)
            f, lg = extractor(resize_uint8(x, image_size))
            feats.append(f.cpu())
            if lg is not None:
                logits.append(lg.cpu())
            bar.update(len(x))
    return _gather_outputs(group, extractor, feats, logits, slice_len, n)


@torch.no_grad()
def generate_and_embed(
    generator: torch.nn.Module,
    extractor: FeatureExtractor,
    group: ProcessGroup,
    *,
    num_samples: int,
    z_dim: int,
    num_classes: int,
    batch_size: int,
    seed: int,
    extractor_image_size: int,
    truncation: float = 0.0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Generate ``num_samples`` images (class-balanced labels ``i % num_classes``) and embed them.
    Returns (features, logits or None, labels), identical on every rank."""
    z_all, y_all = make_noise(num_samples, z_dim, num_classes, seed, truncation)
    start, stop, slice_len = group.shard_range(num_samples, batch_size)
    device = next(generator.parameters()).device
    feats, logits = [], []
    with _progress(stop - start, "embed generated", progress and group.is_main) as bar:
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            y = y_all[i:j].to(device) if num_classes else None
            img = images_to_uint8(generator(z_all[i:j].to(device), y)).to(extractor.device)
            f, lg = extractor(resize_uint8(img, extractor_image_size))
            feats.append(f.cpu())
            if lg is not None:
                logits.append(lg.cpu())
            bar.update(j - i)
    f_all, lg_all = _gather_outputs(group, extractor, feats, logits, slice_len, num_samples)
    return f_all, lg_all, y_all.numpy()


def make_noise(num_samples: int, z_dim: int, num_classes: int, seed: int, truncation: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents N x z_dim (from one seeded generator, so every rank has the same global set) and
    class-balanced labels. ``truncation`` > 0 resamples entries with |z| above it (truncation
    trick, Brock et al. 2019): samples look more typical and less diverse."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num_samples, z_dim, generator=gen)
    if truncation > 0:
        for _ in range(1000):
            bad = z.abs() > truncation
            if not bad.any():
                break
            z[bad] = torch.randn(int(bad.sum()), generator=gen)
        else:
            z = z.clamp(-truncation, truncation)
    y = torch.arange(num_samples) % num_classes if num_classes else torch.zeros(num_samples, dtype=torch.long)
    return z, y


def _gather_outputs(group, extractor, feats, logits, slice_len, n):
    f = torch.cat(feats) if feats else torch.zeros((0, extractor.num_features))
    f_all = group.gather_rows(f, slice_len, n).double().numpy()
    lg_all = None
    if extractor.num_logits:
        lg = torch.cat(logits) if logits else torch.zeros((0, extractor.num_logits))
        lg_all = group.gather_rows(lg, slice_len, n).double().numpy()
    return f_all, lg_all


# The statistics --------------------------------------------------------------------------------


def compute_metrics(
    real_features: np.ndarray,
    real_labels: np.ndarray,
    fake_features: np.ndarray,
    fake_logits: np.ndarray | None,
    fake_labels: np.ndarray | None,
    *,
    num_classes: int,
    kid_subset_size: int,
    kid_num_subsets: int,
    pr_k: int,
    per_class: bool,
    seed: int,
    class_logits_match: bool,
) -> dict[str, float]:
    """FID, KID (mean/std), precision/recall, IS (when logits exist), and for conditional models
    per-class FID and the fraction of samples the classifier assigns to their conditioning class."""
    out: dict[str, float] = {}
    out["fid"] = M.fid(real_features, fake_features)
    out["kid"], out["kid_std"] = M.kid(real_features, fake_features, num_subsets=kid_num_subsets, subset_size=kid_subset_size, seed=seed)
    out["precision"], out["recall"] = M.precision_recall(real_features, fake_features, k=pr_k)
    if fake_logits is not None:
        out["is"], out["is_std"] = M.inception_score(fake_logits, num_splits=min(10, len(fake_logits)))
    if num_classes and fake_labels is not None:
        if class_logits_match and fake_logits is not None:
            out["class_accuracy"] = float((fake_logits.argmax(1) == fake_labels).mean())
        if per_class:
            per = []
            for c in range(num_classes):
                real_c, fake_c = real_features[real_labels == c], fake_features[fake_labels == c]
                if len(real_c) < 2 or len(fake_c) < 2:
                    raise BadInputError(
                        f"per-class FID: class {c} has {len(real_c)} real and {len(fake_c)} generated samples (needs >= 2 each); "
                        f"raise eval.num_samples or set metrics.per_class=false"
                    )
                out[f"fid_class_{c}"] = M.fid(real_c, fake_c)
                per.append(out[f"fid_class_{c}"])
                # Per class, recall shows a class collapsed to one prototype even when the
                # other classes hide it in the overall figure.
                if min(len(real_c), len(fake_c)) > pr_k:
                    out[f"precision_class_{c}"], out[f"recall_class_{c}"] = M.precision_recall(real_c, fake_c, k=pr_k)
            out["fid_class_mean"] = float(np.mean(per))
            recalls = [out[f"recall_class_{c}"] for c in range(num_classes) if f"recall_class_{c}" in out]
            if recalls:
                out["recall_class_min"] = min(recalls)
    return out


# Real-data features: embedded once per dataset and extractor, then cached -----------------------


def metrics_cache_dir(cfg) -> Path:
    if cfg.metrics.cache_dir:
        return Path(cfg.metrics.cache_dir)
    base = cfg.data.cache_dir or os.environ.get("GANDIST_CACHE") or str(Path.home() / ".cache" / "gandist")
    return Path(base) / "metrics"


def real_cache_path(cache_dir: Path, manifest_sha256: str, extractor_name: str, image_size: int, channels: int) -> Path:
    key = hashlib.sha256(f"{manifest_sha256}|{extractor_name}|{image_size}|{channels}".encode()).hexdigest()[:20]
    return cache_dir / f"real-{key}.npz"


def real_features(
    extractor: FeatureExtractor,
    dataset_info: Any,
    group: ProcessGroup,
    *,
    cache_dir: Path,
    image_size: int,
    channels: int,
    batch_size: int,
    progress: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of the real dataset at the generator's image size and channels, from
    the cache keyed by (manifest hash, extractor, size, channels) or embedded and cached now."""
    path = real_cache_path(cache_dir, dataset_info.manifest_sha256, extractor.name, image_size, channels)
    # Every rank must take the same branch: embedding is a collective.
    if group.all_agree(path.is_file()):
        with np.load(path) as z:
            return z["features"], z["labels"]
    from gandist.data import read_all

    images, labels = read_all(dataset_info, image_size=image_size, channels=channels)
    images = images.copy(order="C")  # canonical strides (see LabelledImages)
    log(f"embedding {len(images)} real images with {extractor.name} (cached afterwards in {path})")
    feats, _ = embed_images(extractor, images, group, batch_size=batch_size, image_size=_extractor_size(extractor, image_size), progress=progress)
    if group.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        # np.savez appends ".npz" to a name without it: hand it an open file instead.
        atomic_write_with(path, lambda tmp: _savez(tmp, features=feats, labels=labels), fsync=False)
    group.barrier()
    return feats, labels


def _savez(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _extractor_size(extractor: FeatureExtractor, image_size: int) -> int:
    info = getattr(extractor, "info", None)
    return info["image_size"] if info else image_size


# The domain classifier as default extractor ------------------------------------------------------


def ensure_domain_classifier(cfg, dataset_info: Any, group: ProcessGroup, *, image_size: int, channels: int, log: Callable[[str], None]) -> str:
    """Path of the domain classifier: ``metrics.classifier``, or one trained on the real data on
    first use (rank 0 trains, the others wait) and cached by manifest hash."""
    if cfg.metrics.classifier:
        if not Path(cfg.metrics.classifier).is_file():
            raise BadInputError(f"metrics.classifier: file not found: {cfg.metrics.classifier} (gandist classify writes DIR/domain_classifier.safetensors)")
        return cfg.metrics.classifier
    from gandist.classification.training import ClassifierSettings, LabelledImages, save_classifier, train_classifier

    if not dataset_info.num_classes:  # checked on every rank, before rank 0 alone does any work
        raise DataError(
            "eval.extractor=classifier: the dataset has no class labels to train a domain classifier on; "
            "set metrics.classifier to a trained one, or use eval.extractor=inception with metrics.inception_weights"
        )
    settings = ClassifierSettings(steps=cfg.metrics.classifier_steps)
    key = hashlib.sha256(f"{dataset_info.manifest_sha256}|{settings}|{image_size}|{channels}".encode()).hexdigest()[:20]
    path = metrics_cache_dir(cfg) / f"classifier-{key}.safetensors"
    if not group.all_agree(path.is_file()):
        if group.is_main:
            from gandist.data import read_all

            images, labels = read_all(dataset_info, image_size=image_size, channels=channels)
            log(f"training the domain classifier for evaluation on {len(images)} real images ({settings.steps} steps; cached in {path})")
            model = train_classifier(LabelledImages(images, labels, list(dataset_info.class_names), "real data"), dataset_info.num_classes, settings, seed=0)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_classifier(model, path, arch=settings.arch, channels=channels, image_size=image_size,
                            class_names=list(dataset_info.class_names), train_source=json.dumps(list(dataset_info.urls)[:3]), test_accuracy=float("nan"))
        group.barrier()
    return str(path)


# Entry point for the training loop --------------------------------------------------------------


def evaluate_generator(
    G: torch.nn.Module,
    *,
    cfg,
    dataset_info: Any,
    engine: ProcessGroup,
    num_samples: int,
    step: int = 0,
    truncation: float = 0.0,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> EvalResult:
    """Metrics of generator ``G`` (eval mode, the EMA copy) against the real dataset, computed on
    all ranks of ``engine``; every rank returns the same ``EvalResult`` (metric name -> float, with
    ``.extractor`` naming the feature network). Call it on every rank."""
    log = log or (lambda s: print(s, file=sys.stderr) if engine.is_main else None)
    num_real = int(getattr(dataset_info, "num_samples", 0) or 0)
    need = cfg.metrics.kid_subset_size
    if num_samples < need or (num_real and num_real < need):
        # Before any work: embedding first and failing after would waste minutes.
        raise BadInputError(
            f"KID needs at least metrics.kid_subset_size={need} samples in each set; got {num_real} real and "
            f"{num_samples} generated (eval.num_samples): lower metrics.kid_subset_size or raise eval.num_samples"
        )
    progress = cfg.log.progress if progress is None else progress
    z_dim = _z_dim(G, cfg)
    num_classes = int(getattr(G, "num_classes", 0) or 0)
    image_size, channels = _image_shape(G, z_dim, num_classes)
    cache_dir = metrics_cache_dir(cfg)
    if cfg.eval.extractor == "classifier":
        clf_path = ensure_domain_classifier(cfg, dataset_info, engine, image_size=image_size, channels=channels, log=log)
    else:
        clf_path = ""
    extractor = build_extractor(cfg.eval.extractor, classifier_path=clf_path, inception_weights=cfg.metrics.inception_weights, device=engine.device)
    ext_size = _extractor_size(extractor, image_size)
    real_f, real_y = real_features(extractor, dataset_info, engine, cache_dir=cache_dir, image_size=image_size, channels=channels,
                                   batch_size=cfg.metrics.batch_size, progress=progress, log=log)
    was_training = G.training
    G.eval()
    try:
        fake_f, fake_logits, fake_y = generate_and_embed(
            G, extractor, engine, num_samples=num_samples, z_dim=z_dim, num_classes=num_classes, batch_size=cfg.metrics.batch_size,
            seed=cfg.metrics.seed, extractor_image_size=ext_size, truncation=truncation, progress=progress,
        )
    finally:
        G.train(was_training)
    values = compute_metrics(
        real_f, real_y, fake_f, fake_logits, fake_y if num_classes else None,
        num_classes=num_classes, kid_subset_size=cfg.metrics.kid_subset_size, kid_num_subsets=cfg.metrics.kid_num_subsets,
        pr_k=cfg.metrics.pr_k, per_class=cfg.metrics.per_class, seed=cfg.metrics.seed,
        class_logits_match=extractor.num_logits == num_classes,
    )
    result = EvalResult(values, extractor.name, len(real_f), len(fake_f))
    log(f"eval step {step} [{extractor.name}]: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items() if not k.startswith("fid_class_") or k == "fid_class_mean"))
    return result


def _z_dim(G: torch.nn.Module, cfg) -> int:
    return int(getattr(G, "z_dim", 0) or cfg.model.z_dim)


@torch.no_grad()
def _image_shape(G: torch.nn.Module, z_dim: int, num_classes: int) -> tuple[int, int]:
    """(side, channels) of G's output, from one probe sample."""
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    y = torch.zeros(1, dtype=torch.long, device=device) if num_classes else None
    out = G(torch.zeros(1, z_dim, device=device), y)
    G.train(was_training)
    return int(out.shape[-1]), int(out.shape[1])
