"""Typed run configuration: dataclasses are the single source of truth.

A config is built from the defaults below, then a YAML file (``--config``), then
``key.sub=value`` overrides from the command line, and validated before any work starts.
Every error names the field (``train.batch_size``) and, where there is a fixed set, the
allowed values.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import signal
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gandist.errors import ConfigError


#: Largest seed: NumPy takes seeds below 2**32, and ranks and derived streams add small offsets.
MAX_SEED = 2**31 - 1


@dataclass
class DataConfig:
    path: str = ""
    """Shard directory, brace pattern (``d/{000000..000009}.tar``), object-store folder or shards (``s3://``, ``gs://``, ``https://``: fetched into ``cache_dir``) or ``pipe:`` URL; empty: the built-in dataset."""
    builtin: Literal["digits", "gray28", "colour32", "colour64"] = "digits"
    """Built-in dataset used when ``path`` is empty (made on first use in ``cache_dir``): digits (16x16 gray), or a patch set of photographs that scikit-image and scikit-learn ship (gray28, colour32, colour64)."""
    cache_dir: str = ""
    """Where built-in shards and shards fetched from object stores (``shards/``) are cached; empty: ``$GANDIST_CACHE`` or ``~/.cache/gandist``."""
    cache_limit_gb: float = 50.0
    """Most space the fetched shards take in ``cache_dir``; least recently used ones are evicted (one shard larger than this is still kept while in use)."""
    remote_retries: int = 5
    """Retries of a failed object-store request (0.5 s backoff, doubling) before the run stops with exit code 2 naming the URL."""
    mode: Literal["epoch", "resampled"] = "epoch"
    """``epoch``: every sample once per epoch across ranks; ``resampled``: infinite stream of shards drawn with replacement."""
    num_workers: int = 0
    """Loader worker processes per rank (0: read in the training process; -1: from the CPUs this process may use, at most 4). On CPU they hand batches over through shared memory (`/dev/shm`, a few batches per worker)."""
    shuffle_buffer: int = 2000
    """Samples held in the shuffle buffer of each worker."""
    image_size: int = 0
    """Side of the square training images in pixels; 0: the dataset's own size."""
    channels: int = 0
    """Image channels the model sees (1 or 3); 0: the dataset's own channel count."""
    random_flip: bool = False
    """Random horizontal flip (off by default: digits and text are not mirror-symmetric)."""
    max_skipped_fraction: float = 0.01
    """Stop the run when more than this fraction of samples could not be decoded."""
    manifest: str = ""
    """Path of the shards' ``manifest.json`` when ``path`` is remote (``pipe:``) or the manifest lives elsewhere."""
    random_crop_pad: int = 0
    """Random-crop augmentation: reflect-pad by this many pixels, crop back to size; 0: off."""
    jpeg_decoder: Literal["auto", "pil", "simplejpeg"] = "auto"
    """JPEG shards: ``auto`` takes simplejpeg when installed (``gandist[fast-jpeg]``), else Pillow; JPEGs stored larger than the training size are decoded at >= that size by DCT scaling."""
    device_cache: bool = False
    """Read the whole dataset once and keep it, as uint8, on the training device (same order, augmentation and resume as streaming)."""
    device_cache_max_mb: float = 0.0
    """Also use the device cache whenever the decoded uint8 dataset is at most this many MiB (0: only when ``device_cache``)."""
    labelled_fraction: float = 1.0
    """``train.objective=semisup``: fraction of each class's labelled samples whose labels are used (class-stratified, seeded by ``train.seed``); 1: all labels the shards carry."""
    labelled_per_class: int = 0
    """``train.objective=semisup``: use the labels of this many samples per class instead of a fraction; 0: use ``labelled_fraction``."""

    def validate(self) -> None:
        _check(self.num_workers >= -1, "data.num_workers", "must be >= 0, or -1 (from the CPUs)", self.num_workers)
        _check(self.shuffle_buffer >= 0, "data.shuffle_buffer", "must be >= 0", self.shuffle_buffer)
        _check(self.image_size == 0 or self.image_size >= 4, "data.image_size", "must be 0 (dataset size) or >= 4", self.image_size)
        _check(self.channels in (0, 1, 3), "data.channels", "must be one of 0 (dataset), 1, 3", self.channels)
        _check(0.0 <= self.max_skipped_fraction <= 1.0, "data.max_skipped_fraction", "must be in [0, 1]", self.max_skipped_fraction)
        _check(self.random_crop_pad >= 0, "data.random_crop_pad", "must be >= 0", self.random_crop_pad)
        _check(self.jpeg_decoder in ("auto", "pil", "simplejpeg"), "data.jpeg_decoder", "must be one of auto, pil, simplejpeg",
               self.jpeg_decoder)
        _check(self.cache_limit_gb > 0, "data.cache_limit_gb", "must be > 0", self.cache_limit_gb)
        _check(self.remote_retries >= 0, "data.remote_retries", "must be >= 0", self.remote_retries)
        _check(self.device_cache_max_mb >= 0, "data.device_cache_max_mb", "must be >= 0", self.device_cache_max_mb)
        _check(0.0 < self.labelled_fraction <= 1.0, "data.labelled_fraction", "must be in (0, 1]", self.labelled_fraction)
        _check(self.labelled_per_class >= 0, "data.labelled_per_class", "must be >= 0 (0: use data.labelled_fraction)", self.labelled_per_class)
        if self.labelled_per_class and self.labelled_fraction != 1.0:
            raise ConfigError(
                f"data.labelled_per_class: set either data.labelled_per_class ({self.labelled_per_class}) or "
                f"data.labelled_fraction ({self.labelled_fraction}), not both"
            )


@dataclass
class ModelConfig:
    name: str = "dcgan"
    """Generator/discriminator pair from the model registry: dcgan, mlp, resnet, biggan, r3 (see docs/models.md)."""
    conditional: bool = True
    """Class-conditional G and D (needs labelled data); the default, since users make labelled synthetic data."""
    z_dim: int = 256
    """Length of the latent noise vector (conditional dcgan: multiplied by a class embedding of this length)."""
    g_width: int = 64
    """Generator width: channels of its widest conv layer (dcgan; resnet/biggan/r3: of the stages up to 32 px, halved per doubling beyond) or hidden units / 8 (mlp)."""
    d_width: int = 64
    """Discriminator width: channels of its widest conv layer (same stage rule as ``g_width``)."""
    d_minibatch_std: bool = True
    """Minibatch standard deviation feature in D (Karras et al., 2018): counters mode collapse."""
    spectral_norm_d: Literal["auto", "on", "off"] = "auto"
    """Spectral norm on D's layers (true/false also accepted); auto: the model's source setting (on for resnet/biggan, off for r3/dcgan/mlp). Left unset, a conditional dcgan on images of 28 px or more gets on (the size rule, docs/models.md)."""
    semisup_head: Literal["grid", "pool", "flatten"] = "grid"
    """``train.objective=semisup``: what D's class head reads of the trunk's feature map: grid (averaged down to at most 4x4 positions; the map itself at 16, 32 and 64 px), pool (averaged over all positions) or flatten (the whole map, the only head before 2026-12-07); chosen on validation splits of gray28 and the digits (docs/semisup.md)."""
    attention_resolution: int = 0
    """biggan: side in pixels of the G stage (and the D feature map) that gets self-attention, e.g. 16 or 32; 0: none."""

    def validate(self) -> None:
        # model.name is checked against the model registry by ``gandist.models.check_model_config``
        # (this module imports no run-time code, so it cannot see the registry).
        _check(self.z_dim >= 1, "model.z_dim", "must be >= 1", self.z_dim)
        _check(self.g_width >= 8, "model.g_width", "must be >= 8", self.g_width)
        _check(self.d_width >= 8, "model.d_width", "must be >= 8", self.d_width)
        _check(self.attention_resolution >= 0, "model.attention_resolution", "must be >= 0 (0: no attention)", self.attention_resolution)


@dataclass
class LossConfig:
    name: Literal["nonsaturating", "minimax", "lsgan", "hinge", "wgan", "rpgan", "ragan", "feature_matching"] = "nonsaturating"
    """Adversarial loss: non-saturating BCE (default), original minimax BCE, least squares, hinge, WGAN critic (with ``reg.gp_lambda``), relativistic pairing (R3GAN), relativistic average, or (``train.objective=semisup`` only) feature matching for G on D's penultimate features with BCE for D."""
    unsupervised_weight: float = 1.0
    """``train.objective=semisup``: weight of D's real/generated terms next to the labelled cross-entropy; 0: GAN terms off (D trains as a plain supervised classifier, G is not updated)."""

    def validate(self) -> None:
        _check(self.unsupervised_weight >= 0, "loss.unsupervised_weight", "must be >= 0", self.unsupervised_weight)


@dataclass
class OptimConfig:
    lr_g: float = 2e-4
    """Generator Adam learning rate."""
    lr_d: float = 2e-4
    """Discriminator Adam learning rate."""
    beta1: float = 0.5
    """Adam beta1 (0.5 as in DCGAN: momentum destabilises the adversarial game)."""
    beta2: float = 0.999
    """Adam beta2."""
    weight_decay: float = 0.0
    """Adam weight decay for both networks."""
    grad_clip: float = 0.0
    """Clip each network's gradient norm to this value; 0: no clipping."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """Learning-rate schedule over ``train.steps``: constant, or linear decay to zero after warmup."""
    warmup_steps: int = 0
    """Steps of linear warmup from 0 to the learning rate."""

    def validate(self) -> None:
        _check(self.lr_g > 0, "optim.lr_g", "must be > 0", self.lr_g)
        _check(self.lr_d > 0, "optim.lr_d", "must be > 0", self.lr_d)
        _check(0 <= self.beta1 < 1, "optim.beta1", "must be in [0, 1)", self.beta1)
        _check(0 <= self.beta2 < 1, "optim.beta2", "must be in [0, 1)", self.beta2)
        _check(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0", self.weight_decay)
        _check(self.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 disables clipping)", self.grad_clip)
        _check(self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0", self.warmup_steps)


@dataclass
class TrainConfig:
    steps: int = 3000
    """Training steps (one D update and one G update each); ignored when ``epochs`` > 0."""
    epochs: int = 0
    """Train for this many passes over the data instead of ``steps`` (needs ``data.mode=epoch``)."""
    batch_size: int = 32
    """Global batch size: images per step summed over all ranks and accumulation micro-steps. Left unset, a conditional dcgan on images of 28 px or more gets 64 (the size rule, docs/models.md)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    seed: int = 0
    """Seed of everything random: init, noise, data order; runs with one seed on CPU are identical."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast precision of forward passes (fp16 adds a gradient scaler)."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of G's weights (the EMA G makes samples and metrics)."""
    ema_start_step: int = 100
    """Before this step the EMA copies G's weights instead of averaging (early weights are noise)."""
    objective: Literal["gan", "semisup"] = "gan"
    """``gan``: the usual GAN; ``semisup``: semi-supervised GAN (Salimans et al., 2016): D is also a K-class classifier trained on the labelled subset (``data.labelled_*``), G an unconditional generator."""

    def validate(self, world_size: int = 1) -> None:
        _check(self.steps >= 1, "train.steps", "must be >= 1", self.steps)
        _check(self.epochs >= 0, "train.epochs", "must be >= 0", self.epochs)
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1", self.batch_size)
        _check(self.grad_accum >= 1, "train.grad_accum", "must be >= 1", self.grad_accum)
        _check(0.0 <= self.ema_decay < 1.0, "train.ema_decay", "must be in [0, 1)", self.ema_decay)
        _check(self.ema_start_step >= 0, "train.ema_start_step", "must be >= 0", self.ema_start_step)
        _check(0 <= self.seed <= MAX_SEED, "train.seed", f"must be in [0, {MAX_SEED}]", self.seed)
        per_step = world_size * self.grad_accum
        if self.batch_size % per_step:
            raise ConfigError(
                f"train.batch_size: {self.batch_size} is not divisible by world size {world_size} "
                f"x train.grad_accum {self.grad_accum} = {per_step}; use a multiple of {per_step}"
            )

    def batch_size_per_rank(self, world_size: int) -> int:
        """Images in one micro-batch on one rank."""
        return self.batch_size // (world_size * self.grad_accum)


@dataclass
class LogConfig:
    every_steps: int = 50
    """Scalars to TensorBoard and the console every this many steps."""
    sample_every_steps: int = 250
    """Sample grid from fixed noise (TensorBoard and ``samples/step_*.png``) every this many steps; 0: only at the end."""
    num_grid_images: int = 100
    """Images in the sample grid (conditional: rounded down to whole rows, one row per class)."""
    progress: bool = True
    """Progress with ETA on rank zero: a bar on a terminal; in a log file, a plain line every 30 s (``GANDIST_PROGRESS_INTERVAL_SEC``)."""

    def validate(self) -> None:
        _check(self.every_steps >= 1, "log.every_steps", "must be >= 1", self.every_steps)
        _check(self.sample_every_steps >= 0, "log.sample_every_steps", "must be >= 0", self.sample_every_steps)
        _check(self.num_grid_images >= 1, "log.num_grid_images", "must be >= 1", self.num_grid_images)


@dataclass
class CheckpointConfig:
    every_steps: int = 500
    """Save a checkpoint every this many steps (and always at the end)."""
    keep: int = 3
    """Newest checkpoints kept; older ones are deleted only after a new one is committed."""
    keep_every_steps: int = 0
    """Also keep every checkpoint whose step is a multiple of this, permanently; 0: none."""

    def validate(self) -> None:
        _check(self.every_steps >= 1, "checkpoint.every_steps", "must be >= 1", self.every_steps)
        # keep >= 2: while the newest is being written the previous one must survive.
        _check(self.keep >= 2, "checkpoint.keep", "must be >= 2 (one good checkpoint survives a failed save)", self.keep)
        _check(self.keep_every_steps >= 0, "checkpoint.keep_every_steps", "must be >= 0", self.keep_every_steps)


@dataclass
class EngineConfig:
    kind: Literal["ddp", "zero"] = "ddp"
    """Distributed backend: ``ddp`` (Accelerate DDP) or ``zero`` (DeepSpeed ZeRO, one engine per network)."""
    zero_stage: int = 2
    """ZeRO stage for ``engine.kind=zero``: 1 shards optimizer state, 2 also gradients."""
    deepspeed_config: str = ""
    """Path of a DeepSpeed JSON whose keys override the config gandist generates."""
    offload_optimizer: bool = False
    """ZeRO: keep optimizer state in CPU memory."""
    timeout_minutes: float = 30.0
    """Process-group timeout: a collective hung longer than this fails instead of hanging forever."""

    def validate(self) -> None:
        _check(self.zero_stage in (1, 2), "engine.zero_stage", "must be one of 1, 2 (stage 0 is engine.kind=ddp)", self.zero_stage)
        _check(self.timeout_minutes > 0, "engine.timeout_minutes", "must be > 0", self.timeout_minutes)
        if self.deepspeed_config and not Path(self.deepspeed_config).is_file():
            raise ConfigError(f"engine.deepspeed_config: file not found: {self.deepspeed_config}")


@dataclass
class EvalConfig:
    every_steps: int = 0
    """Compute FID/KID/precision/recall of the EMA generator every this many steps (logged as ``eval/*``, best by FID kept as ``ckpt/best``); 0: off."""
    num_samples: int = 2000
    """Generated images per evaluation (class-balanced for conditional models), split across ranks."""
    extractor: Literal["classifier", "inception"] = "classifier"
    """Feature network: the domain classifier (offline, any image size) or Inception-v3 (needs ``metrics.inception_weights``); their numbers are not comparable."""

    val_path: str = ""
    """``train.objective=semisup``: labelled shards of a validation split, never the test split (e.g. ``shards make --builtin digits --split val`` beside ``--split fit`` as ``data.path``); D's accuracy on them is logged as ``eval/val_accuracy`` and written to ``RUN_DIR/val_accuracy.json`` and ``.png``; empty: off."""
    val_every_steps: int = 100
    """Measure D's accuracy on ``eval.val_path`` every this many steps (and at the last step)."""

    def validate(self) -> None:
        _check(self.every_steps >= 0, "eval.every_steps", "must be >= 0 (0 disables evaluation)", self.every_steps)
        _check(self.num_samples >= 2, "eval.num_samples", "must be >= 2", self.num_samples)
        _check(self.val_every_steps >= 1, "eval.val_every_steps", "must be >= 1", self.val_every_steps)


@dataclass
class MetricsConfig:
    inception_weights: str = ""
    """Local file of the FID Inception-v3 weights (``pt_inception-2015-12-05-6726825d.pth``, sha256 checked) for ``eval.extractor=inception``; never downloaded."""
    classifier: str = ""
    """Domain classifier for ``eval.extractor=classifier`` (``DIR/domain_classifier.safetensors`` from ``gandist classify``); empty: train one on the real data on first use and cache it."""
    classifier_steps: int = 300
    """Training steps of the automatically trained domain classifier."""
    kid_subset_size: int = 1000
    """Samples per KID subset (both sets need at least this many)."""
    kid_num_subsets: int = 100
    """Random subsets KID is averaged over."""
    pr_k: int = 3
    """k of the k-nearest-neighbour manifolds of improved precision/recall."""
    batch_size: int = 250
    """Images per forward pass per rank when generating and embedding."""
    per_class: bool = True
    """Per-class FID (``fid_class_<c>``) for conditional models."""
    cache_dir: str = ""
    """Where real-feature statistics and the automatic classifier are cached; empty: ``<data cache>/metrics``."""
    seed: int = 0
    """Seed of the evaluation noise, labels and KID subsets (fixed, so evaluations are comparable)."""

    def validate(self) -> None:
        _check(self.classifier_steps >= 1, "metrics.classifier_steps", "must be >= 1", self.classifier_steps)
        _check(self.kid_subset_size >= 2, "metrics.kid_subset_size", "must be >= 2", self.kid_subset_size)
        _check(self.kid_num_subsets >= 1, "metrics.kid_num_subsets", "must be >= 1", self.kid_num_subsets)
        _check(self.pr_k >= 1, "metrics.pr_k", "must be >= 1", self.pr_k)
        _check(self.batch_size >= 1, "metrics.batch_size", "must be >= 1", self.batch_size)
        _check(0 <= self.seed <= MAX_SEED, "metrics.seed", f"must be in [0, {MAX_SEED}]", self.seed)


@dataclass
class PreemptionConfig:
    signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])
    """Signals that make every rank checkpoint at the next step boundary and exit with code 3."""
    requeue: bool = True
    """Under Slurm (``SLURM_JOB_ID`` set), rank 0 runs ``scontrol requeue`` after the preemption checkpoint."""
    requeue_signals: list[str] = field(default_factory=lambda: ["SIGUSR1"])
    """Of ``signals``, those that requeue the job (not SIGTERM: ``scancel`` sends it, and a cancelled job must stay cancelled)."""

    def validate(self) -> None:
        for key, names in (("preemption.signals", self.signals), ("preemption.requeue_signals", self.requeue_signals)):
            for name in names:
                _check_signal(name, key)
        handled = {canonical_signal_name(n) for n in self.signals}
        missing = [s for s in self.requeue_signals if canonical_signal_name(s) not in handled]
        if missing:
            raise ConfigError(
                f"preemption.requeue_signals: {', '.join(missing)} not in preemption.signals "
                f"({', '.join(self.signals) or 'empty'}); a signal that is not handled cannot requeue"
            )


def canonical_signal_name(name: str) -> str:
    """``usr1``, ``SIGUSR1`` -> ``SIGUSR1``."""
    name = str(name).strip().upper()
    return name if name.startswith("SIG") else "SIG" + name


def _check_signal(name: str, key: str) -> None:
    canonical = canonical_signal_name(name)
    num = getattr(signal.Signals, canonical, None)
    if num is None:
        raise ConfigError(f"{key}: unknown signal {name!r}; use names like SIGTERM, SIGUSR1, SIGUSR2")
    if num in (signal.SIGKILL, signal.SIGSTOP):
        raise ConfigError(f"{key}: {canonical} cannot be caught")


@dataclass
class RegConfig:
    r1_gamma: float = 0.0
    """R1 penalty weight gamma: gamma/2 * E||dD(x)/dx||^2 on real images is added to D's loss (Mescheder et al., 2018); 0: off."""
    r2_gamma: float = 0.0
    """R2 penalty weight: the same on generated images (R3GAN uses R1 and R2 together); 0: off."""
    gp_lambda: float = 0.0
    """WGAN-GP weight lambda: lambda * E(||dD/dx|| - 1)^2 at random real/generated interpolates (Gulrajani et al., 2017); 0: off."""
    every_steps: int = 1
    """Lazy regularization: R1, R2 and GP only every this many steps, multiplied by it (StyleGAN2 uses 16); 1: every step."""
    lecam_weight: float = 0.0
    """LeCam regularization weight (Tseng et al., 2021): D's logits are pulled towards EMAs of the other side's mean logit; 0: off."""
    lecam_decay: float = 0.99
    """Decay of LeCam's EMA anchors (per step)."""
    ortho_weight: float = 0.0
    """Orthogonal regularization of G's weight matrices, BigGAN style (Brock et al., 2019; they use 1e-4); 0: off."""

    def validate(self) -> None:
        for key in ("r1_gamma", "r2_gamma", "gp_lambda", "lecam_weight", "ortho_weight"):
            _check(getattr(self, key) >= 0, f"reg.{key}", "must be >= 0 (0 disables it)", getattr(self, key))
        _check(self.every_steps >= 1, "reg.every_steps", "must be >= 1", self.every_steps)
        _check(0 <= self.lecam_decay < 1, "reg.lecam_decay", "must be in [0, 1)", self.lecam_decay)

    @property
    def gradient_penalties(self) -> bool:
        return bool(self.r1_gamma or self.r2_gamma or self.gp_lambda)


AUGMENT_POLICIES = ("color", "translation", "cutout")


@dataclass
class AugmentConfig:
    policy: list[str] = field(default_factory=list)
    """DiffAugment transformations applied to every image D sees, real and generated (any of color, translation, cutout; Zhao et al., 2020); empty: off."""
    p: float = 1.0
    """Probability that each transformation is applied to an image (1: DiffAugment as published); ignored when ``ada_target`` > 0."""
    ada_target: float = 0.0
    """Adaptive p (ADA, Karras et al., 2020): target of E[sign(D(real))]; p starts at 0 and rises while D is more confident on real images than this; 0: fixed ``p``."""
    ada_interval: int = 4
    """Adaptive p: adjust p every this many steps."""
    ada_kimg: float = 100.0
    """Adaptive p: thousands of images over which p can move from 0 to 1 (ADA uses 500 for runs of millions of images)."""

    def validate(self) -> None:
        for i, name in enumerate(self.policy):
            if name not in AUGMENT_POLICIES:
                raise ConfigError(f"augment.policy[{i}]: invalid value {name!r}; allowed values: {', '.join(AUGMENT_POLICIES)}")
        _check(0.0 <= self.p <= 1.0, "augment.p", "must be in [0, 1]", self.p)
        _check(0.0 <= self.ada_target < 1.0, "augment.ada_target", "must be in [0, 1) (0: fixed augment.p)", self.ada_target)
        _check(self.ada_interval >= 1, "augment.ada_interval", "must be >= 1", self.ada_interval)
        _check(self.ada_kimg > 0, "augment.ada_kimg", "must be > 0", self.ada_kimg)
        if self.ada_target and not self.policy:
            raise ConfigError("augment.ada_target: adaptive augmentation needs augment.policy (e.g. augment.policy=color,translation,cutout)")


# Checks against run-time registries (model names, the sizes a model can make) are registered by
# the module that owns the registry (``gandist.models``, imported by ``gandist/__init__``), so
# that this module imports nothing of gandist's run time and knows no registry by heart.
_REGISTERED_CHECKS: list[typing.Callable[["Config"], None]] = []


def register_check(check: typing.Callable[["Config"], None]) -> typing.Callable[["Config"], None]:
    """Run ``check(config)`` at the end of every ``Config.validate`` (it raises ConfigError)."""
    _REGISTERED_CHECKS.append(check)
    return check


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)

    def validate(self, world_size: int = 1) -> "Config":
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if f.name == "train":
                section.validate(world_size)
            else:
                section.validate()
        if self.train.epochs and self.data.mode != "epoch":
            raise ConfigError("train.epochs: an epoch budget needs data.mode=epoch (resampled streams have no epochs)")
        if self.loss.name in ("rpgan", "ragan") and self.train.objective == "semisup":
            raise ConfigError(f"loss.name: {self.loss.name} compares real and generated logits in G's step, which "
                              "train.objective=semisup does not compute; use nonsaturating, hinge, lsgan or feature_matching")
        if self.loss.name == "feature_matching" and self.train.objective != "semisup":
            raise ConfigError("loss.name: feature_matching needs train.objective=semisup (it matches D's classifier features)")
        if self.eval.val_path and self.train.objective != "semisup":
            raise ConfigError("eval.val_path: D's validation accuracy is measured for train.objective=semisup only "
                              "(a GAN's D has no class head)")
        if self.train.objective == "semisup" and self.model.conditional:
            raise ConfigError(
                "train.objective: semisup trains an unconditional G (D's class logits carry the labels); "
                "set model.conditional=false"
            )
        for check in _REGISTERED_CHECKS:
            check(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Building configs ---------------------------------------------------------------------------


def load_config(path: str | os.PathLike | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file, then ``key.sub=value`` overrides. Not yet validated."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    for item in overrides:
        key, value = parse_override(item)
        _check_key_path(key)
        set_dotted(data, key, value)
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data, prefix="")


def parse_override(item: str) -> tuple[str, Any]:
    """``train.steps=100`` -> (``train.steps``, 100); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        dotted = f"{prefix}{name}"
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, dotted + ".")
        elif a != b:
            keys.append(dotted)
    return keys


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"--config: file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"--config: {path} is not UTF-8 text ({e})") from None
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config: {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _check_key_path(key: str) -> None:
    """Fail on an override whose dotted key names no config field, naming the whole key."""
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
        if part not in names:
            where = ".".join(parts[:i]) or "config"
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {'.'.join(parts[:i] + [close[0]])}?" if close else ""
            known = f" (known keys in {where}: {', '.join(names)})" if names else f" ({where} is a value, not a section)"
            raise ConfigError(f"{key}: unknown config key{hint}{known}")
        cls = typing.get_type_hints(cls)[part]
    if dataclasses.is_dataclass(cls):
        raise ConfigError(f"{key}: is a section; set one of its keys, e.g. {key}.{dataclasses.fields(cls)[0].name}=...")


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``key`` ``a.b.c``, making missing sections; a
    ``ConfigError`` when a part of the path is a value, not a section."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: is a value, not a section (override {key})")
        node = child
    node[parts[-1]] = value


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    not_text = [k for k in data if not isinstance(k, str)]
    if not_text:  # YAML reads `1: 2` as an integer key
        raise ConfigError(f"{where}: keys must be field names, got {not_text[0]!r} ({type(not_text[0]).__name__}); known keys: {', '.join(fields)}")
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean {prefix}{close[0]}?" if close else ""
        raise ConfigError(f"{prefix}{key}: unknown config key{hint} (known keys in {where}: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, bool):  # YAML 1.1 reads no/off/false (yes/on/true) as booleans
            spelled = [a for a in allowed if str(a).lower() in (("yes", "on", "true") if value else ("no", "off", "false"))]
            value = spelled[0] if spelled else value
        if value not in allowed:
            raise ConfigError(f"{key}: invalid value {value!r}; allowed values: {', '.join(map(str, allowed))}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            # Larger values overflow every tensor, seed and timer they reach (1e30 reads as an integer).
            if abs(value) > MAX_INT:
                raise ConfigError(f"{key}: {value!r} is out of range (|value| <= 2**63 - 1)")
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "2e-4" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        # inf passes every "> 0" rule and fails later (lr=inf at step 1, a timeout of inf minutes in timedelta).
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise AssertionError(f"config field {key} has unsupported type {tp}")


MAX_INT = 2**63 - 1


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {rule} (got {value!r})")
