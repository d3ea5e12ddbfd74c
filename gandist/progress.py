"""Progress of long verbs (train, classify, synth, eval, shards verify) with an ETA.

On a terminal: a tqdm bar. Anywhere else (a Slurm log, ``> file``, a pipe): tqdm would still
redraw its bar with a carriage return on every update -- about 100 KB for the 1,500 steps of
the README's first command -- so there we print one plain line every
``GANDIST_PROGRESS_INTERVAL_SEC`` seconds (default 30) and one at the end instead.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

DEFAULT_INTERVAL_SEC = 30.0


def progress_bar(total: int | None, desc: str, *, unit: str = "it", initial: int = 0, enabled: bool = True,
                 leave: bool = True, file: IO[str] | None = None):
    """A tqdm bar on a terminal, ``PlainProgress`` elsewhere, a no-op when not ``enabled``.
    All three offer ``update``, ``set_postfix``, ``write``, ``close`` and ``with``."""
    file = file or sys.stderr
    if not enabled:
        return PlainProgress(total, desc, unit=unit, initial=initial, file=file, silent=True)
    if _is_terminal(file):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=file, dynamic_ncols=True)
    return PlainProgress(total, desc, unit=unit, initial=initial, file=file, interval_sec=interval_from_env())


def interval_from_env() -> float:
    raw = os.environ.get("GANDIST_PROGRESS_INTERVAL_SEC", "")
    try:
        return max(float(raw), 0.0) if raw else DEFAULT_INTERVAL_SEC
    except ValueError:
        return DEFAULT_INTERVAL_SEC


def _is_terminal(file: IO[str]) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class PlainProgress:
    """Progress as whole lines: ``desc: 300/1500 steps (20%), 12.3 steps/s, elapsed 0:24, ETA 1:37``."""

    def __init__(self, total: int | None, desc: str, *, unit: str = "it", initial: int = 0, file: IO[str] | None = None,
                 interval_sec: float = DEFAULT_INTERVAL_SEC, silent: bool = False):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.file = file or sys.stderr
        self.interval_sec, self.silent = interval_sec, silent
        self._initial = initial
        self._start = self._last_print = time.monotonic()
        self._printed_n = initial
        self._postfix = ""
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last_print >= self.interval_sec:
            self._print(now)

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = False, **kwargs: Any) -> None:
        items = {**(values or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def write(self, message: str) -> None:
        print(message, file=self.file, flush=True)

    def close(self) -> None:
        if not self._closed and self.n != self._printed_n:
            self._print(time.monotonic())
        self._closed = True

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self._start
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:.3g} {self.unit}/s, elapsed {format_duration(elapsed)}"
        if self.total and rate > 0 and self.n < self.total:
            text += f", ETA {format_duration((self.total - self.n) / rate)}"
        if self._postfix:
            text += f" | {self._postfix}"
        return text

    def _print(self, now: float) -> None:
        self._last_print, self._printed_n = now, self.n
        if not self.silent:
            print(self.line(now), file=self.file, flush=True)

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def print_around(bar, log):
    """``log`` wrapped so that its lines do not tear a terminal bar (tqdm clears the bar, the line
    is printed, the bar is redrawn); plain progress needs nothing."""
    if isinstance(bar, PlainProgress):
        return log
    from tqdm import tqdm

    def wrapped(message: str) -> None:
        with tqdm.external_write_mode(file=bar.fp if hasattr(bar, "fp") else None):
            log(message)

    return wrapped
