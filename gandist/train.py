"""The training loop: D step, G step, EMA, log, sample, evaluate, checkpoint. Read it top to bottom.

Everything distributed goes through ``engine`` (ranks, DDP/DeepSpeed, reductions); everything
written to disk goes through ``logger`` (rank zero) and ``TrainingState.save`` (collective).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gandist import ema as ema_generator
from gandist import preemption
from gandist.checkpoint import Checkpointer
from gandist.config import Config
from gandist.engine import Engine, build_engine
from gandist.errors import EXIT_OK, EXIT_PREEMPTED, DataError, PeerLost, TrainingDiverged
from gandist.latents import LatentSampler, fixed_noise
from gandist.leave_together import mark_agreed_stop
from gandist.logger import RunLogger, RunningMeans, StepStats
from gandist.gan_objective import GanObjective
from gandist.models import ModelSpec, build_models, model_spec
from gandist.optim import build_optimizers, lr_factor
from gandist.training_state import TrainingState


@dataclass
class Run:
    """Everything one training run holds; built by ``setup``, advanced by ``train_step``."""

    cfg: Config
    run_dir: Path
    engine: Engine
    spec: ModelSpec
    state: TrainingState  # step, EMA, stream position ...: what a checkpoint holds
    batches: Any  # iterator over the stream: (uint8 B x C x H x W, int64 B)
    logger: RunLogger
    checkpointer: Checkpointer
    latents: LatentSampler
    objective: Any  # the D and G updates of one step: GanObjective, or SemisupObjective (train.objective=semisup)
    dataset_info: Any = None  # gandist.data.DatasetInfo of the real data (metrics compare against it)
    validation: Any = None  # D's accuracy on eval.val_path (train.objective=semisup): a ValidationCurve, or None
    best_fid: float = float("inf")  # of ckpt/best, restored on resume

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def total_steps(self) -> int:
        return self.state.total_steps

    @property
    def ema(self) -> torch.nn.Module:
        return self.state.ema

    @property
    def stream(self):
        return self.state.stream


def train(cfg: Config, run_dir: Path) -> int:
    """Train until ``total_steps`` or a preemption signal; returns the process exit code."""
    # First, so a notice during setup (imports, data, resume) is kept for the first step
    # boundary instead of killing the process: USR1's default action is to terminate.
    preemption.install(cfg.preemption)
    engine = build_engine(cfg, run_dir)
    try:
        run = setup(cfg, run_dir, engine)
        together = False  # every rank stops at this step: they agreed in one all-reduce
        try:
            code = train_loop(run)
            together = True
            return code
        except TrainingDiverged:
            together = True
            raise
        finally:
            run.logger.close()
            run.stream.close()
            if together:
                # Leave together: the launcher SIGTERMs the ranks still tidying up (loader
                # workers, event files) as soon as the first one exits, and then reports the
                # signal instead of their own exit code (see gandist.leave_together).
                engine.barrier()
                mark_agreed_stop(engine.world_size)
    except RuntimeError as e:
        lost = engine.explain_failure(e)  # a peer died (node lost, process killed) or hung
        if lost is None:
            raise
        raise PeerLost(f"{lost}. {kept_checkpoint(run_dir)}") from None
    finally:
        engine.close()


def kept_checkpoint(run_dir: Path) -> str:
    """What a run that stops on a failure leaves to resume from (checkpoints are only ever
    committed whole, so the newest committed one is good)."""
    committed = Checkpointer(run_dir, None, keep=0).committed()
    if not committed:
        return "No checkpoint was saved yet: the same command starts again from step 0"
    step, path = committed[-1]
    return f"The newest checkpoint, {path} (step {step}), is kept: the same command resumes from it"


def train_loop(run: Run) -> int:
    cfg, logger = run.cfg, run.logger
    fixed_z, fixed_y = fixed_noise(cfg.log.num_grid_images, run.spec.z_dim, run.spec.num_classes, cfg.train.seed, run.engine.device)
    means, last_log_time = RunningMeans(), time.perf_counter()

    while run.step < run.total_steps:
        stats = train_step(run)
        means.add(stats)
        logger.advance()

        # One all-reduce per step decides, for all ranks together, whether to stop.
        diverged, stop = stop_flags(run, stats)
        if diverged:
            raise TrainingDiverged(
                f"non-finite loss at step {run.step} (D loss {stats['loss/D'].item():.4g}, G loss {stats['loss/G'].item():.4g}); "
                f"the last good checkpoint in {run.checkpointer.root} is kept. "
                "Lower optim.lr_d/optim.lr_g, or use train.mixed_precision=no or bf16"
            )
        if is_due(run, cfg.log.every_steps):
            log_scalars(run, means, time.perf_counter() - last_log_time)
            means, last_log_time = RunningMeans(), time.perf_counter()
        sample_due, eval_due = is_due(run, cfg.log.sample_every_steps), bool(cfg.eval.every_steps) and is_due(run, cfg.eval.every_steps)
        if sample_due or eval_due or stop or is_due(run, cfg.checkpoint.every_steps):
            refresh_ema_statistics(run)  # the EMA is about to be sampled, evaluated or saved
        if sample_due:
            log_samples(run, fixed_z, fixed_y)
        new_best = eval_due and evaluate(run)
        if run.validation is not None and is_due(run, cfg.eval.val_every_steps):
            validate(run)
        if stop or new_best or is_due(run, cfg.checkpoint.every_steps):
            path = save_checkpoint(run)
            if new_best:
                run.checkpointer.mark_best(path, {"step": run.step, "fid": run.best_fid, "extractor": cfg.eval.extractor})
        if stop:
            code = preemption.exit_code()  # 130 after Ctrl-C, else 3
            what = "interrupt (SIGINT)" if code != EXIT_PREEMPTED else "preemption signal"
            logger.info(f"{what}: saved {path} at step {run.step}; exiting with code {code}")
            preemption.on_preempted(cfg.preemption, is_main=run.engine.is_main, log=logger.info)
            return code

    logger.finished(run.step)
    return EXIT_OK


def is_due(run: Run, every_steps: int) -> bool:
    """A periodic action is due every ``every_steps`` steps (0: never) and always at the last step."""
    return (every_steps > 0 and run.step % every_steps == 0) or run.step == run.total_steps


# Phases of one step ---------------------------------------------------------------------------


def train_step(run: Run) -> StepStats:
    """One D update (with the regularization phase "Dreg" folded in when due), one G update, the EMA."""
    set_learning_rates(run)
    stats = run.objective.update(run)  # GanObjective, or SemisupObjective for train.objective=semisup
    update_ema(run)
    run.state.step += 1
    return stats


def stop_flags(run: Run, stats: StepStats) -> tuple[bool, bool]:
    """(some rank's loss is non-finite, some rank was asked to stop), agreed by all ranks."""
    finite = bool(torch.isfinite(torch.stack(list(stats.values()))).all())
    diverged, stop = run.engine.any_true([not finite, preemption.stop_requested()])
    return diverged, stop


def update_ema(run: Run) -> None:
    decay = run.cfg.train.ema_decay if run.step >= run.cfg.train.ema_start_step else 0.0
    ema_generator.update_ema(run.ema, run.engine.unwrap("G"), decay)


def refresh_ema_statistics(run: Run) -> None:
    """BatchNorm statistics of the EMA generator, estimated for its own weights (``gandist.ema``)."""
    ema_generator.refresh_batchnorm_stats(run.ema, run.spec.z_dim, run.spec.num_classes, run.cfg.train.seed, run.step, run.engine.device)


def set_learning_rates(run: Run) -> None:
    for name, base in (("G", run.cfg.optim.lr_g), ("D", run.cfg.optim.lr_d)):
        run.engine.set_lr(name, base * lr_factor(run.cfg, run.step, run.total_steps))


# Logging, samples, evaluation, checkpoints ------------------------------------------------------


def log_scalars(run: Run, means: RunningMeans, elapsed_sec: float) -> None:
    images = means.num_steps * run.cfg.train.batch_size  # global batch: already summed over ranks
    skipped = run.engine.reduce_sum(torch.tensor([float(getattr(run.stream, "num_skipped", 0))]))
    run.logger.scalars(run.step, {
        **means.means(run.engine),
        "lr/G": run.engine.lr("G"), "lr/D": run.engine.lr("D"),
        "perf/images_per_sec": images / max(elapsed_sec, 1e-9),
        "data/skipped": skipped.item(),
    })


@torch.no_grad()
def log_samples(run: Run, fixed_z: torch.Tensor, fixed_y: torch.Tensor | None) -> None:
    rows = run.spec.num_classes if run.spec.num_classes and len(fixed_z) % run.spec.num_classes == 0 else None
    run.logger.image_grid(run.step, lambda: run.ema(fixed_z, fixed_y), nrow=len(fixed_z) // rows if rows else None)


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


def validate(run: Run) -> None:
    """D's accuracy on the validation split (``eval.val_path``, semisup runs), on all ranks:
    ``eval/val_accuracy`` in TensorBoard, the curve in ``val_accuracy.json`` and ``.png``."""
    acc = run.validation.measure(run.engine.unwrap("D"), run.engine, run.step)
    run.logger.scalars(run.step, {"eval/val_accuracy": acc})
    run.logger.artifact(run.validation.save)


def save_checkpoint(run: Run) -> Path:
    path = run.state.save(run.checkpointer)
    run.logger.flush()
    return path


# Setup ------------------------------------------------------------------------------------------


def setup(cfg: Config, run_dir: Path, engine: Engine) -> Run:
    from gandist.data import build_stream, resolve_dataset

    engine.seed_rngs(cfg.train.seed)  # identical init on every rank
    with engine.main_first():  # rank zero builds the built-in dataset's cache; the others find it
        info = resolve_dataset(cfg.data)

    spec = model_spec(cfg, info)
    g, d = build_models(cfg.model.name, spec)
    notes: list[str] = []  # printed once the logger exists
    if cfg.train.objective == "semisup":
        from gandist.semisup import setup_semisup

        d, objective, stream_info = setup_semisup(cfg, run_dir, engine, info, spec, d, log=notes.append)
    else:
        objective, stream_info = GanObjective(cfg, engine), info
    ema = copy.deepcopy(g).eval().requires_grad_(False)
    engine.prepare({"G": g, "D": d}, build_optimizers(cfg, g, d))
    ema.to(engine.device)

    stream = build_stream(cfg.data, stream_info, batch_size_per_rank=engine.batch_size_per_rank, rank=engine.rank,
                          world_size=engine.world_size, seed=cfg.train.seed,
                          image_size=spec.image_size, channels=spec.channels, log=notes.append, device=engine.device)
    if cfg.train.epochs:
        if not stream.batches_per_epoch:
            raise DataError("train.epochs: the data stream has no epoch length (use data.mode=epoch)")
        total_steps = cfg.train.epochs * stream.batches_per_epoch // cfg.train.grad_accum
    else:
        total_steps = cfg.train.steps

    checkpointer = Checkpointer(run_dir, engine, keep=cfg.checkpoint.keep, keep_every_steps=cfg.checkpoint.keep_every_steps)
    model_info = {"model_name": cfg.model.name, "spec": spec.to_dict(), "num_classes": spec.num_classes,
                  "class_names": list(info.class_names) if spec.num_classes else [],
                  # The real data's own size: synth writes images of this size even when the run
                  # resized the data (data.image_size), so synthetic and real images match.
                  "data_image_size": info.image_size, "data_channels": info.channels}
    if cfg.train.objective == "semisup":
        from gandist.semisup import model_info_extra

        model_info.update(model_info_extra(info, cfg.model.semisup_head))
    state = TrainingState(engine=engine, ema=ema, stream=stream, model_info=model_info, config_yaml=cfg.to_yaml(),
                          total_steps=total_steps)
    resume_from = checkpointer.agree_on_resumable(log=notes.append)

    logger = RunLogger(run_dir, engine.is_main, start_step=checkpointer.step_of(resume_from), total_steps=total_steps,
                       progress=cfg.log.progress)
    if resume_from is None:
        logger.config(cfg.to_dict())
    for note in notes:
        logger.info(note)
    run = Run(cfg=cfg, run_dir=run_dir, engine=engine, spec=spec, state=state, batches=None, logger=logger,
              checkpointer=checkpointer, latents=LatentSampler(engine, spec.z_dim, spec.num_classes, cfg.train.seed),
              objective=objective, dataset_info=info)
    state.components.update(objective.components())  # e.g. ADA's p, LeCam's anchors: in the checkpoint
    best = checkpointer.read_best()
    if best and best.get("extractor") == cfg.eval.extractor:
        run.best_fid = float(best["fid"])
    if resume_from is not None:
        state.load(resume_from, log=logger.info)
        logger.info(f"resuming from {resume_from} at step {run.step} of {total_steps}")
    if cfg.eval.val_path:
        from gandist.semisup.validation import setup_validation

        run.validation = setup_validation(cfg, run_dir, info, spec, list(info.class_names), start_step=run.step)
    run.batches = iter(stream)
    logger.started(cfg, spec, engine, num_images=info.num_samples, step=run.step, total_steps=total_steps)
    return run
