"""Distributed backends behind one interface (``gandist.engine.base.Engine``), and the process
group (``ProcessGroup``) that the engines extend and the evaluate/synthesize verbs use directly.

Nothing heavy is imported here: ``gandist.engine.launch`` (the launcher's environment) must load
without torch, for the CLI's config checks. The names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gandist.engine.base import Engine, NetName
    from gandist.engine.factory import build_engine, make_accelerator
    from gandist.engine.process_group import ProcessGroup

_LAZY = {
    "Engine": "gandist.engine.base",
    "NetName": "gandist.engine.base",
    "ProcessGroup": "gandist.engine.process_group",
    "build_engine": "gandist.engine.factory",
    "make_accelerator": "gandist.engine.factory",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gandist.engine' has no attribute {name!r}")


__all__ = ["Engine", "NetName", "ProcessGroup", "build_engine", "make_accelerator"]
