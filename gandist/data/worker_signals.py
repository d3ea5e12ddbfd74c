"""How loader worker processes treat the training process's signals.

Ctrl-C at a terminal and Slurm's SIGTERM/SIGUSR1 reach every process of the group or job step,
loader workers included. They are requests to the training process: it saves at the next step
boundary, then stops its workers. A worker killed by one instead would fail the very batch fetch
the save waits for, and a forked worker running the trainer's handler would log and act as if it
were the trainer. So workers ignore these signals; they still end when their loader closes them
(SIGKILL after a grace period) or when the training process is gone.

A signal can also land in the moment between a worker's fork and its ignoring the signal. The
training process therefore blocks these signals while it starts workers: they stay pending, a
worker discards its copy when it unblocks them after ignoring, and the training process receives
its own as soon as the workers are started.

Workers that ignore SIGTERM must be closed before multiprocessing's exit hook runs: it sends
SIGTERM to daemonic children and then joins them, so it would wait forever. Loaders register with
:func:`close_before_exit`.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util  # noqa: F401 - registers multiprocessing's exit hook before ours (see the end)
import signal
import weakref
from typing import Iterator, Protocol


def training_signals() -> set[signal.Signals]:
    """Ctrl-C and the signals this process handles in Python (preemption: SIGTERM, SIGUSR1, ...)."""
    found = set()
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
        if sig == signal.SIGINT or callable(handler):
            found.add(sig)
    return found


@contextlib.contextmanager
def blocked_while_starting_workers() -> Iterator[set[signal.Signals]]:
    """Blocks the training signals in this thread (and so in processes forked inside the block);
    yields them, for the workers to pass to :func:`ignore_in_worker`."""
    signals = training_signals()
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield signals
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def ignore_in_worker(signals: set[signal.Signals]) -> None:
    """First thing in a worker: ignore the training signals, then unblock them (any that arrived
    while the worker started are discarded)."""
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def ignore_in_dataloader_worker(signals: set[signal.Signals], worker_id: int) -> None:
    """:func:`ignore_in_worker` as a DataLoader ``worker_init_fn`` (bound with functools.partial)."""
    ignore_in_worker(signals)


class Closable(Protocol):
    def close(self) -> None: ...


_open_loaders: weakref.WeakSet[Closable] = weakref.WeakSet()


def close_before_exit(loader: Closable) -> None:
    """Close ``loader`` (its ``close()`` ends its workers) at interpreter exit if it is still
    open then. Held weakly: a loader that is garbage-collected is not kept alive by this."""
    _open_loaders.add(loader)


def _close_open_loaders() -> None:
    for loader in list(_open_loaders):
        loader.close()


# atexit runs hooks last-registered first: this one before multiprocessing's (imported above).
atexit.register(_close_open_loaders)
