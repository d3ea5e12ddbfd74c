"""``gandist config [--defaults | --run-dir DIR] [KEY]``: every config key with its type, default
and doc line, from the same source as the docs' configuration reference."""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from gandist.errors import ConfigError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "config",
        help="list the config keys: type, default and meaning (or one key / one section)",
        description="List every config key with its type, default and doc line (the docs' configuration reference, docs/reference/config.md, "
        "comes from the same source). --run-dir adds the value a run used (its config.yaml).",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--defaults", action="store_true", help="the defaults only (the default)")
    which.add_argument("--run-dir", type=Path, help="also show the values in RUN_DIR/config.yaml")
    p.add_argument("key", nargs="?", metavar="KEY", help="one key (train.steps) or section (train)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from gandist.config import config_from_dict
    from gandist.config_reference import key_docs

    docs = key_docs()
    if args.key:
        chosen = [d for d in docs if d.key == args.key or d.key.startswith(args.key + ".")]
        if not chosen:
            names = [d.key for d in docs] + sorted({d.key.split(".")[0] for d in docs})
            close = difflib.get_close_matches(args.key, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"KEY: unknown config key {args.key!r}{hint} (gandist config lists them all)")
        docs = chosen
    run_values = None
    if args.run_dir is not None:
        path = args.run_dir / "config.yaml"
        if not path.is_file():
            raise ConfigError(f"--run-dir: no config.yaml in {args.run_dir} (is it a gandist run directory?)")
        run_values = config_from_dict(yaml.safe_load(path.read_text()) or {}).to_dict()
    for d in docs:
        line = f"{d.key} ({d.plain_type}) default {d.default!r}"
        if run_values is not None:
            section, name = d.key.split(".", 1)
            value = run_values[section][name]
            line += f", in this run: {value!r}" + (" (changed)" if value != d.default else "")
        print(line)
        print(f"    {d.doc.replace('`', '')}")
    return 0
