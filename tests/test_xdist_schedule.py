"""The suite's xdist schedule: every file whose tests use a Slurm cluster shares one work unit.

scripts/test.sh runs two workers. Two Slurm files on two workers would submit jobs to the same
nodes at once, and a job that waits for the other's nodes can run out its test's time.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import SLURM_TEST_FILES, xdist_work_unit

TESTS = Path(__file__).resolve().parent
SLURM_MARKS = {"slurm", "slurm_multinode"}


def _uses_slurm_mark(source: str) -> bool:
    """True when a `pytest.mark.slurm` or `pytest.mark.slurm_multinode` appears in the file."""
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and node.attr in SLURM_MARKS
                and isinstance(node.value, ast.Attribute) and node.value.attr == "mark"):
            return True
    return False


def test_the_slurm_file_set_is_exactly_the_files_that_use_a_slurm_mark():
    marked = {p.name for p in TESTS.glob("test_*.py") if _uses_slurm_mark(p.read_text())}
    assert marked, "no test file uses a Slurm mark: the scan is broken"
    assert marked == SLURM_TEST_FILES


def test_slurm_files_share_one_work_unit_and_other_files_have_their_own():
    assert {xdist_work_unit(f"tests/{name}::test_x[1]") for name in SLURM_TEST_FILES} == {"slurm"}
    assert xdist_work_unit("tests/test_train.py::test_a") == xdist_work_unit("tests/test_train.py::test_b[x::y]")
    assert xdist_work_unit("tests/test_train.py::test_a") != xdist_work_unit("tests/test_recipes.py::test_a")
