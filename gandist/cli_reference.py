"""The command-line reference (the docs page ``docs/reference/cli.md``) generated from the
argparse parser of ``gandist`` (``gandist.cli.build_parser``): every verb and nested verb, its
usage, description and options with their help text.

``python -m gandist.cli_reference`` prints the page; ``--write docs/reference/cli.md`` writes
it. A test checks the committed page is the current one. Only docs tooling and tests import
this module.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from gandist.reference_page import main, write_if_changed

PAGE = "docs/reference/cli.md"
WIDTH = 100  # usage lines are wrapped at this width, whatever the terminal

INTRO = """# Command-line reference

Generated from the argparse parser (`gandist.cli.build_parser`): do not edit this page, run
`python -m gandist.cli_reference --write docs/reference/cli.md`. The same text, on the
command line: `gandist --help`, `gandist VERB --help`, `gandist shards make --help`.
`python -m gandist` is the same command as `gandist`. Config keys (`key.sub=value`) are listed
in the [configuration reference](config.md); exit codes in [Exit codes and trust](../exit-codes.md).
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=WIDTH, max_help_position=40)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _sub_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _md_text(text: str) -> str:
    """Help text as a markdown table cell: pipes escaped; outside `code`, <, > and * escaped."""
    text = " ".join(text.split())
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts are outside backticks
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")
    return "`".join(parts).replace("|", "\\|")


def _code(text: str) -> str:
    text = text.replace("|", "\\|")
    return f"``{text}``" if "`" in text else f"`{text}`"


def _default(action: argparse.Action) -> str:
    d = action.default
    if action.required or d is None or d is argparse.SUPPRESS or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return ""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or d == "" or d == []:
        return ""
    return _code(str(d))


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    fmt = _formatter(parser.prog)
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help is argparse.SUPPRESS:
            continue
        invocation = fmt._format_action_invocation(action)
        help_text = fmt._expand_help(action) if action.help else ""
        if action.required and action.option_strings:
            help_text = "(required) " + help_text
        rows.append(f"| {_code(invocation)} | {_md_text(help_text)} | {_default(action)} |")
    if not rows:
        return []
    return ["| argument | meaning | default |", "| --- | --- | --- |", *rows]


def _usage(parser: argparse.ArgumentParser) -> str:
    fmt = _formatter(parser.prog)
    fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return fmt.format_help().strip()


def _section(parser: argparse.ArgumentParser, level: int, summary: str = "") -> list[str]:
    lines = ["", "#" * level + f" `{parser.prog}`", ""]
    text = parser.description or summary
    if text:
        lines += [_md_text(text).replace("\\|", "|"), ""]
    lines += ["```text", _usage(parser), "```", ""]
    lines += _options_table(parser)
    subs = _subparsers(parser)
    if subs:
        helps = _sub_help(parser)
        lines += ["", "| verb | what it does |", "| --- | --- |"]
        lines += [f"| [`{sub.prog}`](#{_anchor(sub.prog)}) | {_md_text(helps.get(name, ''))} |" for name, sub in subs.items()]
        for name, sub in subs.items():
            lines += _section(sub, level + 1, helps.get(name, ""))
    return lines


def _anchor(prog: str) -> str:
    """The heading id MkDocs (Python-Markdown's toc) gives the heading `` `prog` ``."""
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", prog).strip().lower())


def page() -> str:
    from gandist.cli import build_parser

    parser = build_parser()
    parser.formatter_class = _formatter
    return INTRO + "\n".join(_section(parser, 2)) + "\n"


def write_page(path: str | Path = PAGE) -> bool:
    """Write the page; True when the file changed."""
    return write_if_changed(path, page())


if __name__ == "__main__":
    main(page, PAGE)
