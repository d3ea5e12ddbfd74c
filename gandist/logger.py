"""Rank-zero outputs: TensorBoard scalars and images, ``metrics.jsonl``, console progress.

Every method may be called on every rank; only rank zero writes. This keeps ``if rank == 0``
out of the training loop.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from gandist.images import make_grid, save_png, to_uint8, view_upscale


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
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stderr)

    def info(self, message: str) -> None:
        if not self.is_main:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

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

    def image_grid(self, step: int, images_bchw: torch.Tensor, nrow: int) -> Path | None:
        """Sample grid to TensorBoard and ``samples/step_<8 digits>.png``."""
        if not self.is_main:
            return None
        grid = make_grid(to_uint8(images_bchw), nrow=nrow)
        self._writer.add_image("samples/ema", grid, step, dataformats="HWC")
        return save_png(grid, self.run_dir / "samples" / f"step_{step:08d}.png", upscale=view_upscale(images_bchw.shape[-1]))

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
