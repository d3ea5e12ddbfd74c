"""Preemption: a signal sets a flag; the training loop saves at the next step boundary."""

from __future__ import annotations

import signal

_stop = False


def _handler(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    # Only set a flag: saving here could run in the middle of a backward pass.
    global _stop
    _stop = True


def install(signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")) -> None:
    for name in signals:
        signal.signal(getattr(signal, name), _handler)


def stop_requested() -> bool:
    return _stop
