"""The README documents the code as it is."""

import re

from gandist.cli import VERBS
from gandist.config_reference import reference
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

README = (REPO_ROOT / "README.md").read_text()


def test_config_reference_is_current():
    assert reference() in README, "run: python -m gandist.config_reference --write README.md"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert blocks[0].startswith("bash scripts/setup.sh") and "gandist train" in blocks[0]
    assert blocks[1] == "bash scripts/test.sh"
    assert "bash scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()


def test_every_verb_is_documented():
    for verb in VERBS:
        assert f"gandist {verb}" in README, verb
