"""How a launched worker process leaves once every rank agreed to stop with a non-zero code.

torchrun (and so ``accelerate launch``) sends SIGTERM to every worker still running as soon as
one exits non-zero, and then reports the signal, not the worker's own exit code. The ranks meet
at a barrier after tidying up (``gandist.train.train``), but Python's interpreter teardown after
that takes from milliseconds to seconds on a loaded machine, longer on rank 0 (more modules,
threads and the run lock), so a slower rank could still be killed mid-teardown. A worker whose
ranks agreed on the stop therefore flushes its output and ends with ``os._exit`` right after the
barrier's aftermath: nothing is left to tear down by then (logger, loader, checkpoint and
process group are closed), and every rank's exit code reaches the launcher.

Only ``python -m gandist`` (what the launchers run) acts on it; ``gandist.cli.main`` called in
a process of the user's own returns as usual.
"""

from __future__ import annotations

import os
import sys

_agreed_stop = False


def mark_agreed_stop(world_size: int) -> None:
    """Every rank of a multi-process run stops at this step (preemption, interrupt, divergence)."""
    global _agreed_stop
    _agreed_stop = world_size > 1


def exit_process(code: int) -> None:
    """End the process with ``code``: at once after an agreed non-zero stop, else by SystemExit."""
    if code != 0 and _agreed_stop:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
