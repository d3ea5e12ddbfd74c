"""What the generated reference pages (``config_reference``, ``cli_reference``) share: writing
the page only when it changed, and their ``python -m ... [--write PATH]`` entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable


def write_if_changed(path: str | Path, text: str) -> bool:
    """Write ``text`` to ``path`` (making its folder); True when the file changed."""
    path = Path(path)
    old = path.read_text() if path.exists() else None
    if text != old:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return text != old


def main(page: Callable[[], str], default_path: str | Path, argv: list[str] | None = None) -> None:
    """``--write [PATH]``: write the page (default ``default_path``); no arguments: print it."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--write"]:
        write_if_changed(argv[1] if len(argv) > 1 else default_path, page())
    else:
        print(page(), end="")
