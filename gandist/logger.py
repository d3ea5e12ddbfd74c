"""Rank-zero outputs: TensorBoard scalars and images, ``metrics.jsonl``, console progress.

Every method may be called on every rank; only rank zero writes. This keeps ``if rank == 0``
out of the training loop.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from gandist.engine.peers import layout
from gandist.grid import make_grid, save_png, to_uint8, view_upscale

if TYPE_CHECKING:
    from gandist.engine.process_group import ProcessGroup


#: Statistics of one training step by name ("loss/D", "D/real" ...): detached tensors, means over
#: the step's micro-batches.
StepStats = dict[str, torch.Tensor]


class RunningMeans:
    """Sums of step statistics since the last log; reduced across ranks once per log interval."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.num_steps = 0

    def add(self, stats: StepStats) -> None:
        for name, value in stats.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.num_steps += 1

    def means(self, group: ProcessGroup) -> dict[str, float]:
        names = sorted(self.sums)  # the same order on every rank: one all-reduce of one vector
        mean = group.reduce_mean(torch.stack([self.sums[n] for n in names])) / max(1, self.num_steps)
        return dict(zip(names, mean.tolist()))


#: Eval results linked to the hparams (``eval/<name>`` scalars; absent ones stay empty columns).
HPARAM_METRICS = ("fid", "kid", "precision", "recall", "is", "class_accuracy", "fid_class_mean")


def flatten_config(config: dict, prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested config -> {"train.steps": 1500, ...}; lists become comma-joined strings (hparams
    take scalars and strings only)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(map(str, value))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class RunLogger:
    def __init__(self, run_dir: Path, is_main: bool, *, start_step: int, total_steps: int, progress: bool):
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self._writer = None
        self._bar = None
        if not is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a preempted run wrote after its last checkpoint, so the
        # curves continue without duplicated or backward steps after a resume.
        self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step or None)
        self._truncate_metrics(start_step)
        if progress:
            from gandist.progress import progress_bar

            # A tqdm bar on a terminal; in a log file, a plain line every 30 s (gandist.progress).
            self._bar = progress_bar(total_steps, "train", unit="step", initial=start_step)

    def config(self, config: dict) -> None:
        """The resolved config in TensorBoard: as hparams, so runs compare in the HParams tab with
        the eval metrics (``eval/fid`` ...) as its metric columns, and as text. Written into the run's
        own event files (``SummaryWriter.add_hparams`` would start a separate sub-run)."""
        if not self.is_main:
            return
        from torch.utils.tensorboard.summary import hparams

        flat = flatten_config(config)
        experiment, session_start, session_end = hparams(flat, {f"eval/{name}": 0.0 for name in HPARAM_METRICS})
        for summary in (experiment, session_start, session_end):
            self._writer.file_writer.add_summary(summary)
        import yaml

        text = yaml.safe_dump(config, sort_keys=False)
        # TensorBoard renders text as markdown: indent to keep it one preformatted block.
        self._writer.add_text("config", "".join("    " + line + "\n" for line in text.splitlines()), 0)

    def info(self, message: str) -> None:
        if not self.is_main:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def started(self, cfg, spec, engine, *, num_images: int, step: int, total_steps: int) -> None:
        """One line saying what this run trains, on what, how it is split, and from which step."""
        kind = f"conditional, {spec.num_classes} classes" if spec.num_classes else "unconditional"
        self.info(
            f"gandist: {cfg.model.name} ({kind}) on {num_images} images {spec.channels}x{spec.image_size}x{spec.image_size} | "
            f"engine {cfg.engine.kind}, world size {engine.world_size}, device {engine.device}, "
            f"batch {engine.batch_size_per_rank} per rank x {engine.world_size} ranks x {cfg.train.grad_accum} accum = "
            f"{cfg.train.batch_size} global | steps {step} -> {total_steps}, precision {cfg.train.mixed_precision}"
        )
        peers = getattr(engine, "peers", [])
        if len({p.host for p in peers}) > 1:  # a multi-node job: say which node runs which rank
            self.info(f"ranks on {len({p.host for p in peers})} hosts: {layout(peers)}")

    def finished(self, step: int) -> None:
        """Where to look at what the run made."""
        d = self.run_dir
        self.info(
            f"done: {step} steps.\n"
            f"  TensorBoard logs: {d / 'tb'}   (tensorboard --logdir {d / 'tb'})\n"
            f"  sample grid:      {d / 'samples' / f'step_{step:08d}.png'}\n"
            f"  checkpoint:       {d / 'ckpt' / f'step_{step:08d}'}\n"
            f"  more samples:     gandist sample --run-dir {d} --n 64 --out grid.png"
        )

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.is_main:
            return
        for key, value in values.items():
            self._writer.add_scalar(key, value, step)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")
        if self._bar is not None:
            short = {k.split("/")[-1] if k.startswith("loss/") else k.replace("/", "_"): v for k, v in values.items()}
            keys = ("D", "G", "D_real", "D_fake", "perf_images_per_sec")
            self._bar.set_postfix({k: f"{short[k]:.3g}" for k in keys if k in short}, refresh=False)
        else:
            text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
            print(f"step {step}: {text}", flush=True)

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def image_grid(self, step: int, make_images: Callable[[], torch.Tensor], nrow: int | None) -> Path | None:
        """Sample grid to TensorBoard and ``samples/step_<8 digits>.png``; ``make_images()`` (B x C x H x W
        in [-1, 1]) runs on rank zero only, so other ranks spend no forward pass on it."""
        if not self.is_main:
            return None
        images_bchw = make_images()
        grid = make_grid(to_uint8(images_bchw), nrow=nrow)
        self._writer.add_image("samples/ema", grid, step, dataformats="HWC")
        return save_png(grid, self.run_dir / "samples" / f"step_{step:08d}.png", upscale=view_upscale(images_bchw.shape[-1]))

    def artifact(self, write: Callable[[Path], None]) -> None:
        """Rank zero calls ``write(run_dir)`` to write a file of the run (e.g. the validation curve)."""
        if self.is_main:
            write(self.run_dir)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()

    def _truncate_metrics(self, start_step: int) -> None:
        """Drop ``metrics.jsonl`` lines past the step we resume from (written after the last checkpoint)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= start_step]
        if len(kept) != len(lines):
            path.write_text("".join(line + "\n" for line in kept))
