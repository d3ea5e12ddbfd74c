"""The ``gandist`` command. Each verb lives in ``gandist/commands/<verb>.py`` and exposes
``add_parser(subparsers)``, which registers its arguments and sets ``func(args) -> exit code``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gandist.version import __version__
from gandist.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, GandistError

# Order is the order of ``gandist --help``.
VERBS = ["train", "shards", "sample", "export", "eval", "synth", "classify", "config", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gandist",
        description="Distributed GAN training on sharded image data, from generator to classifier gain.",
    )
    parser.add_argument("--version", action="version", version=f"gandist {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    subparsers.required = True
    for verb in VERBS:
        importlib.import_module(f"gandist.commands.{verb}").add_parser(subparsers)
    return parser




def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        # Overrides (key.sub=value) may stand before or after options: argparse alone would
        # take only the first run of positionals, so collect the rest here.
        args, extra = parser.parse_known_args(argv)
        if extra:
            if getattr(args, "overrides", None) is None or any(e.startswith("-") or "=" not in e for e in extra):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.overrides = list(args.overrides) + extra
    except SystemExit as e:  # argparse: 0 for --help, 2 for bad usage
        return int(e.code or 0)
    try:
        from gandist.runtime import apply_thread_budget

        apply_thread_budget()
        return int(args.func(args) or 0)
    except GandistError as e:
        print(f"gandist {args.verb}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"gandist {args.verb}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except FileNotFoundError as e:
        print(f"gandist {args.verb}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception:  # noqa: BLE001 - report, then the documented exit code
        import traceback

        traceback.print_exc()
        return EXIT_FAILURE
