"""The docs name only what exists: every repository path and every relative link in README.md and
in every page under docs/ (subfolders included) is in the repository, and every `gandist ...`
command line parses (training commands pass --dry-run)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from gandist.cli import build_parser, main
from gandist.config_reference import key_docs

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TOP_DIRS = ("gandist", "tests", "scripts", "launch", "slurm", "configs", "docs", "benchmarks", ".ci")
PATH_RE = re.compile(r"(?<![\w./$-])((?:%s)/[\w./*{}-]*[\w*}])" % "|".join(re.escape(d) for d in TOP_DIRS))
KEYS = {d.key for d in key_docs()}


def doc_text(path: Path) -> str:
    return path.read_text()


def code_blocks(text: str) -> list[str]:
    """Shell (and unlabelled) fenced blocks; other languages' blocks are skipped whole."""
    return [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M) if lang in ("", "bash", "sh")]


def inline_spans(text: str) -> list[str]:
    without_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`([^`\n]+)`", without_blocks)


def repo_paths(path: Path) -> set[str]:
    text = doc_text(path)
    found = set()
    for chunk in code_blocks(text) + inline_spans(text):
        for m in PATH_RE.finditer(chunk):
            p = m.group(1).rstrip(".")
            if "<" in p or p.startswith("docs/library_notes.md,"):
                continue
            found.add(p)
    for target in link_targets(path):
        found.add(str(target.relative_to(REPO)) if target.is_relative_to(REPO) else str(target))
    return found


def link_targets(path: Path) -> list[Path]:
    """Relative markdown links and images of a page, e.g. ](docs/x.png) or ](../training.md#resume),
    resolved from the page's own folder, anchors dropped; web links and same-page anchors skipped."""
    out = []
    for m in re.finditer(r"\]\(([^)\s]+)\)", doc_text(path)):
        link = m.group(1)
        if re.match(r"[a-z][\w+.-]*:", link) or link.startswith("#"):
            continue
        out.append((path.parent / link.split("#", 1)[0]).resolve())
    return out


def command_lines(path: Path) -> list[tuple[str, bool, str]]:
    """(gandist command, from a code block, that block) triples: the text from `gandist VERB` to the
    end of its shell command, with continuations joined and comments dropped."""
    text = doc_text(path)
    out = []
    for block in code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"^\s*\d+ s: ", "", line)  # timings in front of commands
            for part in re.split(r"&&|;|\|\||&(?!\w)", line.split(" #")[0]):
                m = re.search(r"(?:^|\s|/)gandist ([a-z].*)", part)
                if m and not part.strip().startswith("#"):
                    out.append(("gandist " + m.group(1).strip(), True, block))
    for span in inline_spans(text):
        if span.startswith("gandist ") and re.match(r"gandist [a-z]", span):
            out.append((span, False, ""))
    return out


def _subparser(argv: list[str]):
    """The argparse parser of a verb (or of `shards make` etc.) and the tokens after it."""
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    verb = argv[0]
    assert verb in action.choices, f"unknown verb {verb!r}"
    sub, rest = action.choices[verb], argv[1:]
    nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
    if nested and rest and rest[0] in nested[0].choices:
        sub, rest = nested[0].choices[rest[0]], rest[1:]
    return sub, rest


def check_options_exist(argv: list[str]) -> None:
    sub, rest = _subparser(argv)
    known = {opt for a in sub._actions for opt in a.option_strings}
    for token in rest:
        for opt in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", token):
            assert opt in known, f"{opt} is not an option of gandist {' '.join(argv[:2])}"


def check_overrides(argv: list[str]) -> None:
    for token in argv:
        key = token.split("=", 1)[0].strip("[]")
        if "=" in token and not token.startswith("-") and "." in key and key != "key.sub":
            assert key in KEYS, f"{key} is not a config key"


def all_docs_items(kind):
    items = []
    for path in DOCS:
        values = repo_paths(path) if kind == "paths" else command_lines(path)
        name = str(path.relative_to(REPO))
        items += [pytest.param(name, v, id=f"{name}:{v if isinstance(v, str) else v[0]}"[:120]) for v in sorted(values)]
    return items


@pytest.mark.parametrize("doc,rel", all_docs_items("paths"))
def test_repository_paths_exist(doc, rel):
    matches = list(REPO.glob(rel.replace("{", "[").replace("}", "]"))) if any(c in rel for c in "*{") else []
    assert matches or (REPO / rel).exists(), f"{doc} names {rel}, which is not in the repository"


@pytest.mark.parametrize("doc,command", all_docs_items("commands"))
def test_command_lines_parse(doc, command, tmp_path):
    line, from_block, block = command
    argv = shlex.split(line.replace("{", "").replace("}", ""))[1:]
    # Files the same block writes first (echo '...' > ds.json) are made in a temp dir.
    for content, name in re.findall(r"echo '([^']*)' > (\S+)", block):
        (tmp_path / name).write_text(content)
        argv = [t.replace(f"={name}", f"={tmp_path / name}") for t in argv]
    check_options_exist(argv)
    check_overrides(argv)
    synopsis = any(s in line for s in ("[", "...", "|", " PART")) or not from_block
    if synopsis:
        return
    sub, rest = _subparser(argv)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            _, extra = sub.parse_known_args(rest)
        except SystemExit:
            raise AssertionError(f"{doc}: `{line}` does not parse: {err.getvalue()}") from None
    assert all("=" in e and not e.startswith("-") for e in extra), f"{doc}: `{line}`: unrecognized {extra}"
    if argv[0] == "train":
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*argv, "--dry-run"])
        assert code == 0, f"{doc}: `{line} --dry-run` exited {code}: {err.getvalue()}"


def test_readme_links_resolve():
    targets = link_targets(REPO / "README.md")
    assert len(targets) >= 10
    missing = [str(t) for t in targets if not t.exists()]
    assert not missing, f"README.md links to {missing}, which are not in the repository"


def test_docs_pages_in_subfolders_are_scanned():
    names = {str(p.relative_to(REPO)) for p in DOCS}
    assert {"docs/reference/config.md", "docs/reference/cli.md", "docs/index.md", "docs/slurm.md"} <= names
    # a link from docs/reference/ resolves from that folder, not from the repository root
    assert REPO / "docs" / "exit-codes.md" in link_targets(REPO / "docs" / "reference" / "cli.md")


def test_the_scan_finds_what_it_should():
    paths = repo_paths(REPO / "README.md")
    assert {"scripts/slurm_multinode_up.sh", "launch/run.sh", "configs/dcgan64_imagefolder.yaml"} <= paths
    commands = [c for c, _, _ in command_lines(REPO / "README.md")]
    assert any(c.startswith("gandist train --run-dir runs/digits") for c in commands)
    assert any(c.startswith("gandist train --run-dir runs/a engine.kind=zero") for c in commands)  # after -m


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_paths_in_experiment_configs_exist(config):
    for m in PATH_RE.finditer(config.read_text()):
        assert (REPO / m.group(1)).exists(), f"{config.name} names {m.group(1)}, which is not in the repository"


def test_slurm_starter_is_our_own_and_parses():
    script = REPO / "scripts" / "slurm_up.sh"
    text = script.read_text()
    assert "shared/" not in text and "slurm-local" not in text  # nothing outside the repository
    assert "apt-get install" in text and "slurmctld" in text and "slurmd" in text
    import subprocess

    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
