"""Under CI (``CI=true``) a test whose service is missing (local Slurm, root-only tmpfs) fails
instead of skipping; elsewhere it skips with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("ci, expected_code, expected_text", [("true", 1, "1 failed"), ("", 0, "1 skipped")])
def test_missing_service_fails_only_under_ci(tmp_path, ci, expected_code, expected_text):
    (tmp_path / "test_needs_service.py").write_text(
        "from conftest import skip_unless_ci\n\n\ndef test_x():\n    skip_unless_ci('no such service here')\n")
    env = {**os.environ, "CI": ci, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
                           str(tmp_path / "test_needs_service.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == expected_code, proc.stdout[-2000:]
    assert expected_text in proc.stdout
