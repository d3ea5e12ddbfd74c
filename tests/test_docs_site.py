"""The documentation site builds with `mkdocs build --strict` (the docs extra: mkdocs and
mkdocs-material), and a broken link or anchor makes that build fail. Without mkdocs the tests
skip, naming the reason; under CI=true they fail instead, so a missing docs extra cannot make CI
green by taking the build away."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mkdocs():
    missing = [m for m in ("mkdocs", "material") if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed: pip install -e '.[docs]' (bash scripts/setup.sh --dev does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)

    def build(root: Path, site: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                              cwd=root, env=env, capture_output=True, text=True, timeout=300)

    return build


def test_site_builds_in_strict_mode(mkdocs, tmp_path):
    p = mkdocs(REPO, tmp_path / "site")
    assert p.returncode == 0, p.stdout + p.stderr
    for page in ("index.html", "slurm/index.html", "reference/config/index.html", "reference/cli/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    shutil.copytree(REPO / "docs", root / "docs")
    return root


@pytest.mark.parametrize("link", ["no-such-page.md", "training.md#no-such-heading"])
def test_a_broken_link_fails_the_build(mkdocs, tmp_path, link):
    root = _copy(tmp_path)
    with open(root / "docs" / "index.md", "a") as f:
        f.write(f"\nSee [this]({link}).\n")
    p = mkdocs(root, tmp_path / "site")
    assert p.returncode != 0, f"a link to {link} did not fail the strict build:\n{p.stdout}{p.stderr}"
    assert link.split("#")[-1] in p.stdout + p.stderr


def test_every_page_is_in_the_nav():
    """A page left out of mkdocs.yml's nav builds but cannot be reached from the menu."""
    nav = (REPO / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    pages = sorted(str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md"))
    missing = [p for p in pages if f": {p}\n" not in nav + "\n"]
    assert pages and not missing, f"docs pages missing from the nav in mkdocs.yml: {missing}"
