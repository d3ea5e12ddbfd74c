"""The README is the five-minute page and the docs document the code as it is: the two commands
first, every verb documented, the generated references current."""

import re
from pathlib import Path

from gandist import cli_reference, config_reference
from gandist.cli import VERBS, build_parser

REPO_ROOT = Path(__file__).resolve().parents[1]

README = (REPO_ROOT / "README.md").read_text()


def test_readme_is_short():
    assert len(README.splitlines()) <= 200, "README.md is the five-minute page: details go into docs/"


def test_config_reference_is_current():
    page = REPO_ROOT / config_reference.PAGE
    assert page.exists() and page.read_text() == config_reference.page(), (
        f"{config_reference.PAGE} is stale: run: python -m gandist.config_reference --write {config_reference.PAGE}")


def test_cli_reference_is_current():
    page = REPO_ROOT / cli_reference.PAGE
    assert page.exists() and page.read_text() == cli_reference.page(), (
        f"{cli_reference.PAGE} is stale: run: python -m gandist.cli_reference --write {cli_reference.PAGE}")


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert blocks[0].startswith("bash scripts/setup.sh") and "gandist train" in blocks[0]
    assert blocks[1] == "bash scripts/test.sh"
    assert "bash scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()


def _nested_verbs():
    parser = build_parser()
    top = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for verb, sub in top.choices.items():
        yield verb
        for a in sub._actions:
            if a.__class__.__name__ == "_SubParsersAction":
                yield from (f"{verb} {name}" for name in a.choices)


def test_every_verb_is_documented():
    cli_page = (REPO_ROOT / cli_reference.PAGE).read_text()
    index = (REPO_ROOT / "docs" / "index.md").read_text()
    verbs = list(_nested_verbs())
    assert set(VERBS) <= set(verbs) and "shards make" in verbs
    for verb in verbs:
        assert f"#`gandist {verb}`\n" in cli_page.replace("# `", "#`"), f"{verb} has no section in {cli_reference.PAGE}"
    for verb in VERBS:  # and a line in the commands table of the start page
        assert f"| `gandist {verb}" in index, f"gandist {verb} is missing from the commands table of docs/index.md"


def test_readme_names_no_page_that_is_not_in_the_site_nav():
    nav = (REPO_ROOT / "mkdocs.yml").read_text()
    for link in re.findall(r"\]\(docs/([^)#\s]+)", README):
        assert link in nav, f"README.md links to docs/{link}, which mkdocs.yml's nav does not list"


def test_reference_pages_write_only_when_changed(tmp_path):
    for module in (config_reference, cli_reference):
        path = tmp_path / module.__name__ / "page.md"
        assert module.write_page(path) is True and path.read_text() == module.page()
        assert module.write_page(path) is False
