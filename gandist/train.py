"""The training loop: D step, G step, EMA, log, sample, checkpoint. Read it top to bottom.

Everything distributed goes through ``engine`` (ranks, DDP/DeepSpeed, reductions); everything
written to disk goes through ``logger`` (rank zero) and ``checkpointer`` (collective).
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gandist import preemption
from gandist.checkpoint import Checkpointer, load_tensor_file, save_tensor_file
from gandist.config import Config
from gandist.engine import Engine, build_engine
from gandist.errors import EXIT_OK, EXIT_PREEMPTED, DataError, TrainingDiverged
from gandist.images import to_unit_range
from gandist.logger import RunLogger
from gandist.losses import get_loss
from gandist.models import ModelSpec, build_models


@dataclass
class Run:
    """Everything one training run holds; built by ``setup``, advanced by ``train_step``."""

    cfg: Config
    run_dir: Path
    engine: Engine
    spec: ModelSpec
    model_info: dict[str, Any]
    ema: torch.nn.Module
    stream: Any  # gandist.data.ImageStream
    batches: Any  # iterator over the stream
    logger: RunLogger
    checkpointer: Checkpointer
    total_steps: int
    step: int = 0
    noise_generator: torch.Generator | None = None  # reseeded for every draw (sample_latents)
    dataset_info: Any = None  # gandist.data.DatasetInfo of the real data (metrics compare against it)
    best_fid: float = float("inf")  # of ckpt/best, restored on resume


def train(cfg: Config, run_dir: Path) -> int:
    """Train until ``total_steps`` or a preemption signal; returns the process exit code."""
    # First, so a notice during setup (imports, data, resume) is kept for the first step
    # boundary instead of killing the process: USR1's default action is to terminate.
    preemption.install(cfg.preemption)
    engine = build_engine(cfg, run_dir)
    try:
        run = setup(cfg, run_dir, engine)
        try:
            return train_loop(run)
        finally:
            run.logger.close()
            run.stream.close()
    finally:
        engine.close()


def train_loop(run: Run) -> int:
    cfg, engine, logger = run.cfg, run.engine, run.logger
    loss_fn = get_loss(cfg.loss.name)
    fixed_z, fixed_y = fixed_noise(run)
    stats = torch.zeros(4, device=engine.device)  # sums since last log: D loss, G loss, D(real), D(fake)
    steps_since_log, last_log_time = 0, time.perf_counter()

    while run.step < run.total_steps:
        step_stats = train_step(run, loss_fn)
        steps_since_log += 1
        stats += step_stats
        logger.advance()

        # One all-reduce per step decides, for all ranks together, whether to stop.
        diverged, stop = stop_flags(run, step_stats)
        if diverged:
            raise TrainingDiverged(
                f"non-finite loss at step {run.step} (D loss {step_stats[0].item():.4g}, G loss {step_stats[1].item():.4g} "
                f"on rank {engine.rank}); the last good checkpoint in {run.checkpointer.root} is kept. "
                "Lower optim.lr_d/optim.lr_g, or use train.mixed_precision=no or bf16"
            )
        if is_due(run, cfg.log.every_steps):
            log_scalars(run, stats, steps_since_log, time.perf_counter() - last_log_time)
            stats.zero_()
            steps_since_log, last_log_time = 0, time.perf_counter()
        if is_due(run, cfg.log.sample_every_steps):
            log_samples(run, fixed_z, fixed_y)
        new_best = bool(cfg.eval.every_steps) and is_due(run, cfg.eval.every_steps) and evaluate(run)
        if stop or new_best or is_due(run, cfg.checkpoint.every_steps):
            path = save_checkpoint(run)
            if new_best:
                run.checkpointer.mark_best(path, {"step": run.step, "fid": run.best_fid, "extractor": cfg.eval.extractor})
        if stop:
            logger.info(f"preemption signal: saved {path} at step {run.step}; exiting with code {EXIT_PREEMPTED}")
            preemption.on_preempted(cfg.preemption, is_main=engine.is_main, log=logger.info)
            return EXIT_PREEMPTED

    logger.info(finished_message(run))
    return EXIT_OK


def is_due(run: Run, every_steps: int) -> bool:
    """A periodic action is due every ``every_steps`` steps (0: never) and always at the last step."""
    return (every_steps > 0 and run.step % every_steps == 0) or run.step == run.total_steps


# Phases of one step ---------------------------------------------------------------------------


def train_step(run: Run, loss_fn) -> torch.Tensor:
    """One D update, one G update, the EMA; returns [D loss, G loss, D(real), D(fake)] (detached)."""
    set_learning_rates(run)
    d_loss, d_real, d_fake = discriminator_step(run, loss_fn)
    g_loss = generator_step(run, loss_fn)
    update_ema(run)
    run.step += 1
    return torch.stack([d_loss, g_loss, d_real, d_fake])


def stop_flags(run: Run, step_stats: torch.Tensor) -> tuple[bool, bool]:
    """(some rank's loss is non-finite, some rank was asked to stop), agreed by all ranks."""
    local = torch.tensor([float(not torch.isfinite(step_stats).all()), float(preemption.stop_requested())])
    flags = run.engine.reduce_sum(local) if run.engine.world_size > 1 else local
    return bool(flags[0] > 0), bool(flags[1] > 0)


def discriminator_step(run: Run, loss_fn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One D update on real batches vs generated ones (G's output detached). Returns detached
    D loss, mean D(real) and mean D(fake) as probabilities."""
    engine, accum = run.engine, run.cfg.train.grad_accum
    g, d = engine.net("G"), engine.net("D")
    total = torch.zeros(3, device=engine.device)
    for micro in range(accum):
        real_u8, labels = next(run.batches)
        real = to_unit_range(real_u8.to(engine.device, non_blocking=True))
        labels = labels.to(engine.device, non_blocking=True) if run.spec.num_classes else None
        z, fake_labels = sample_latents(run, real.shape[0], phase=0, micro=micro)
        with engine.no_sync("D") if micro < accum - 1 else contextlib.nullcontext():
            with engine.autocast():
                with torch.no_grad():
                    fake = g(z, fake_labels)
                real_logits = d(real, labels)
                fake_logits = d(fake, fake_labels)
                loss = loss_fn.d_loss(real_logits.float(), fake_logits.float())
            engine.backward(loss, "D")
        total += torch.stack([loss.detach(), torch.sigmoid(real_logits.detach().float()).mean(),
                              torch.sigmoid(fake_logits.detach().float()).mean()])
    engine.step("D")
    total /= accum
    return total[0], total[1], total[2]


def generator_step(run: Run, loss_fn) -> torch.Tensor:
    """One G update through a frozen D (no D gradients: DeepSpeed issue 4923, DESIGN fact 2)."""
    engine, accum = run.engine, run.cfg.train.grad_accum
    g = engine.net("G")
    total = torch.zeros((), device=engine.device)
    with engine.frozen("D") as d:
        for micro in range(accum):
            z, fake_labels = sample_latents(run, run.cfg.train.batch_size_per_rank(engine.world_size), phase=1, micro=micro)
            with engine.no_sync("G") if micro < accum - 1 else contextlib.nullcontext():
                with engine.autocast():
                    loss = loss_fn.g_loss(d(g(z, fake_labels), fake_labels).float())
                engine.backward(loss, "G")
            total += loss.detach()
    engine.step("G")
    return total / accum


@torch.no_grad()
def update_ema(run: Run) -> None:
    """EMA of G's weights; buffers (BatchNorm statistics) are copied, not averaged."""
    g = run.engine.unwrap("G")
    decay = run.cfg.train.ema_decay if run.step >= run.cfg.train.ema_start_step else 0.0
    ema_params, params = list(run.ema.parameters()), [p.detach() for p in g.parameters()]
    if params[0].dtype != ema_params[0].dtype:  # zero keeps bf16/fp16 working weights
        params = [p.to(ema_params[0].dtype) for p in params]
    # One multi-tensor kernel for all parameters instead of one small kernel each.
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    torch._foreach_copy_(list(run.ema.buffers()), list(g.buffers()))


def sample_latents(run: Run, batch: int, phase: int, micro: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Noise and class labels for one micro-batch, drawn from a generator seeded by
    (seed, step, phase, micro, rank): a resumed run draws exactly what it would have drawn."""
    # Drawn on the training device: a CPU draw plus a host-to-device copy cost ~10% of a small
    # model's GPU step. Reseeding one generator is cheap and keeps the draw a pure function.
    device = run.engine.device
    if run.noise_generator is None:
        run.noise_generator = torch.Generator(device=device)
    gen = run.noise_generator
    gen.manual_seed(hash((run.cfg.train.seed, run.step, phase, micro, run.engine.rank)) & 0x7FFF_FFFF_FFFF_FFFF)
    z = torch.randn(batch, run.spec.z_dim, generator=gen, device=device)
    labels = torch.randint(0, run.spec.num_classes, (batch,), generator=gen, device=device) if run.spec.num_classes else None
    return z, labels


def set_learning_rates(run: Run) -> None:
    for name, base in (("G", run.cfg.optim.lr_g), ("D", run.cfg.optim.lr_d)):
        run.engine.set_lr(name, base * lr_factor(run.cfg, run.step, run.total_steps))


def lr_factor(cfg: Config, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at ``step``: linear warmup, then constant or linear decay."""
    warmup = cfg.optim.warmup_steps
    if warmup and step < warmup:
        return (step + 1) / warmup
    if cfg.optim.lr_schedule == "linear":
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return 1.0


# Logging, samples, checkpoints ------------------------------------------------------------------


def log_scalars(run: Run, stats: torch.Tensor, num_steps: int, elapsed_sec: float) -> None:
    mean = (run.engine.reduce_mean(stats) / max(1, num_steps)).tolist()
    images = num_steps * run.cfg.train.batch_size  # global batch: already summed over ranks
    skipped = run.engine.reduce_sum(torch.tensor([float(getattr(run.stream, "num_skipped", 0))]))
    run.logger.scalars(run.step, {
        "loss/D": mean[0], "loss/G": mean[1], "D/real": mean[2], "D/fake": mean[3],
        "lr/G": run.engine.lr("G"), "lr/D": run.engine.lr("D"),
        "perf/images_per_sec": images / max(elapsed_sec, 1e-9),
        "data/skipped": skipped.item(),
    })


@torch.no_grad()
def log_samples(run: Run, fixed_z: torch.Tensor, fixed_y: torch.Tensor | None) -> None:
    if not run.engine.is_main:
        return
    images = run.ema(fixed_z, fixed_y)
    rows = run.spec.num_classes if run.spec.num_classes and len(fixed_z) % run.spec.num_classes == 0 else None
    run.logger.image_grid(run.step, images, nrow=len(fixed_z) // rows if rows else None)


def evaluate(run: Run) -> bool:
    """FID/KID/precision/recall of the EMA generator on all ranks, logged as ``eval/*``.
    True when the FID beats the best so far (the caller then keeps this step as ``ckpt/best``)."""
    from gandist.metrics import evaluate_generator

    result = evaluate_generator(run.ema, cfg=run.cfg, dataset_info=run.dataset_info, engine=run.engine,
                                num_samples=run.cfg.eval.num_samples, step=run.step, progress=False, log=run.logger.info)
    run.logger.scalars(run.step, {f"eval/{key}": float(value) for key, value in result.items()})
    fid = float(result["fid"])
    if fid < run.best_fid:
        run.best_fid = fid
        return True
    return False


def fixed_noise(run: Run) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The noise behind every sample grid, identical across a run's grids so progress is visible.
    Conditional: one row per class (as many full rows as fit in ``log.num_grid_images``)."""
    n = run.cfg.log.num_grid_images
    gen = torch.Generator().manual_seed(run.cfg.train.seed + 12345)
    labels = None
    if run.spec.num_classes:
        per_class = max(1, n // run.spec.num_classes)
        n = per_class * run.spec.num_classes
        labels = torch.arange(run.spec.num_classes).repeat_interleave(per_class).to(run.engine.device)
    z = torch.randn(n, run.spec.z_dim, generator=gen).to(run.engine.device)
    return z, labels


def save_checkpoint(run: Run) -> Path:
    engine = run.engine
    full = engine.full_state()  # collective under zero: every rank calls it

    def write_main(tmp: Path) -> None:
        save_tensor_file({"G": full["G"], "D": full["D"], "G_ema": run.ema.state_dict()}, tmp / "model.pt")
        save_tensor_file({"opt_G": full["opt_G"], "opt_D": full["opt_D"], "scaler": full["scaler"]}, tmp / "optim.pt")
        save_tensor_file({"step": run.step, "total_steps": run.total_steps, "world_size": engine.world_size,
                          "lr": {"G": engine.lr("G"), "D": engine.lr("D")},
                          "data": run.stream.state_dict()}, tmp / "trainer.pt")
        (tmp / "config.yaml").write_text(run.cfg.to_yaml())
        import json

        (tmp / "model.json").write_text(json.dumps(run.model_info, indent=1))

    def write_rank(tmp: Path) -> None:
        engine.save_sharded(tmp / "sharded")
        save_tensor_file({"rng": rng_state(), "data": run.stream.state_dict()}, tmp / "rank" / f"{engine.rank:05d}.pt")

    path = run.checkpointer.save(run.step, write_main, write_rank)
    run.logger.flush()
    return path


def restore_checkpoint(run: Run, path: Path) -> None:
    """Load every piece of state ``save_checkpoint`` wrote, on every rank."""
    engine = run.engine
    model = load_tensor_file(path / "model.pt")
    optim = load_tensor_file(path / "optim.pt")
    trainer = load_tensor_file(path / "trainer.pt")
    engine.load_full_state({**model, **optim})
    engine.load_sharded(path / "sharded")
    run.ema.load_state_dict(model["G_ema"])
    run.step = int(trainer["step"])
    rank_file = path / "rank" / f"{engine.rank:05d}.pt"
    same_world = trainer["world_size"] == engine.world_size
    if same_world and rank_file.exists():
        per_rank = load_tensor_file(rank_file)
        set_rng_state(per_rank["rng"])
        run.stream.load_state_dict(per_rank["data"])
    else:
        # Another world size: ranks read other slices of the data, so continue from rank 0's
        # position in the epoch (the global batch, hence steps per epoch, is unchanged).
        run.stream.continue_from(trainer["data"])
        run.logger.info(
            f"resuming a checkpoint of {trainer['world_size']} process(es) on {engine.world_size}: global batch "
            f"{run.cfg.train.batch_size} is kept ({run.cfg.train.batch_size_per_rank(engine.world_size)} per rank); the data "
            f"stream continues at epoch {run.stream.epoch}, batch {run.stream.batches_in_epoch} (ranks now read other slices)"
        )


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain data (loadable with weights_only)."""
    version, py_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# Setup ------------------------------------------------------------------------------------------


def setup(cfg: Config, run_dir: Path, engine: Engine) -> Run:
    from gandist.data import build_stream, resolve_dataset

    torch.manual_seed(cfg.train.seed)  # identical init on every rank
    random.seed(cfg.train.seed + engine.rank)
    np.random.seed(cfg.train.seed + engine.rank)

    # Rank zero builds the built-in dataset's cache first; the others then find it complete.
    info = resolve_dataset(cfg.data) if engine.is_main else None
    engine.barrier()
    if info is None:
        info = resolve_dataset(cfg.data)

    spec = model_spec(cfg, info)
    g, d = build_models(cfg.model.name, spec)
    ema = copy.deepcopy(g).eval().requires_grad_(False)
    betas = (cfg.optim.beta1, cfg.optim.beta2)
    optimizers = {
        "G": torch.optim.Adam(g.parameters(), lr=cfg.optim.lr_g, betas=betas, weight_decay=cfg.optim.weight_decay),
        "D": torch.optim.Adam(d.parameters(), lr=cfg.optim.lr_d, betas=betas, weight_decay=cfg.optim.weight_decay),
    }
    engine.prepare({"G": g, "D": d}, optimizers)
    ema.to(engine.device)

    per_rank = cfg.train.batch_size_per_rank(engine.world_size)
    stream = build_stream(cfg.data, info, batch_size_per_rank=per_rank, rank=engine.rank,
                          world_size=engine.world_size, seed=cfg.train.seed,
                          image_size=spec.image_size, channels=spec.channels)
    if cfg.train.epochs:
        if not stream.batches_per_epoch:
            raise DataError("train.epochs: the data stream has no epoch length (use data.mode=epoch)")
        total_steps = cfg.train.epochs * stream.batches_per_epoch // cfg.train.grad_accum
    else:
        total_steps = cfg.train.steps

    checkpointer = Checkpointer(run_dir, engine, keep=cfg.checkpoint.keep, keep_every_steps=cfg.checkpoint.keep_every_steps)
    model_info = {"model_name": cfg.model.name, "spec": spec.to_dict(), "num_classes": spec.num_classes,
                  "class_names": list(info.class_names) if spec.num_classes else []}
    messages: list[str] = []
    resume_from = checkpointer.find_resumable(log=messages.append) if engine.is_main else None
    resume_step = int(engine.reduce_sum(torch.tensor([float(_step_of(resume_from))])).item())
    if resume_step and not engine.is_main:
        resume_from = checkpointer.root / f"step_{resume_step:08d}"

    logger = RunLogger(run_dir, engine.is_main, start_step=resume_step, total_steps=total_steps,
                       progress=cfg.log.progress)
    if not resume_step:
        logger.config(cfg.to_dict())
    for message in messages:
        logger.info(message)
    run = Run(cfg=cfg, run_dir=run_dir, engine=engine, spec=spec, model_info=model_info, ema=ema, stream=stream,
              batches=None, logger=logger, checkpointer=checkpointer, total_steps=total_steps, dataset_info=info)
    best = checkpointer.read_best()
    if best and best.get("extractor") == cfg.eval.extractor:
        run.best_fid = float(best["fid"])
    if resume_from is not None:
        restore_checkpoint(run, resume_from)
        logger.info(f"resuming from {resume_from} at step {run.step} of {total_steps}")
    run.batches = iter(stream)
    logger.info(start_message(run, info))
    return run


def model_spec(cfg: Config, info) -> ModelSpec:
    if cfg.model.conditional and not info.num_classes:
        raise DataError(
            f"model.conditional: the dataset {info.manifest_path or cfg.data.path} has no class labels; "
            "set model.conditional=false to train an unconditional GAN"
        )
    return ModelSpec(
        image_size=cfg.data.image_size or info.image_size,
        channels=cfg.data.channels or info.channels,
        num_classes=info.num_classes if cfg.model.conditional else 0,
        z_dim=cfg.model.z_dim,
        g_width=cfg.model.g_width,
        d_width=cfg.model.d_width,
        d_minibatch_std=cfg.model.d_minibatch_std,
    )


def start_message(run: Run, info) -> str:
    cfg, engine = run.cfg, run.engine
    per_rank = cfg.train.batch_size_per_rank(engine.world_size)
    return (
        f"gandist: {cfg.model.name} ({'conditional, ' + str(run.spec.num_classes) + ' classes' if run.spec.num_classes else 'unconditional'}) "
        f"on {info.num_samples} images {run.spec.channels}x{run.spec.image_size}x{run.spec.image_size} | "
        f"engine {cfg.engine.kind}, world size {engine.world_size}, device {engine.device}, "
        f"batch {per_rank} per rank x {engine.world_size} ranks x {cfg.train.grad_accum} accum = {cfg.train.batch_size} global | "
        f"steps {run.step} -> {run.total_steps}, precision {cfg.train.mixed_precision}"
    )


def finished_message(run: Run) -> str:
    d = run.run_dir
    grid = d / "samples" / f"step_{run.step:08d}.png"
    return (
        f"done: {run.step} steps.\n"
        f"  TensorBoard logs: {d / 'tb'}   (tensorboard --logdir {d / 'tb'})\n"
        f"  sample grid:      {grid}\n"
        f"  checkpoint:       {d / 'ckpt' / ('step_%08d' % run.step)}\n"
        f"  more samples:     gandist sample --run-dir {d} --n 64 --out grid.png"
    )


def _step_of(path: Path | None) -> int:
    return int(path.name.split("_")[1]) if path is not None else 0
