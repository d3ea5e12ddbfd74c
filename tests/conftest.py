"""Shared fixtures: the repository root, a `gandist` subprocess runner, a cached built-in dataset."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# scripts/test.sh runs the suite on two pytest-xdist workers, one per CI core. A worker runs one
# test at a time, so one torch thread per worker keeps the two from fighting for the cores (set
# before any test module imports torch; spawned processes get it from gandist_env).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The files whose tests submit jobs to a Slurm cluster: they share its nodes, so they run on one
# worker, one after the other. tests/test_xdist_schedule.py checks this set against the markers.
SLURM_TEST_FILES = frozenset({"test_run_lock.py", "test_shards_slice.py", "test_slurm_jobs.py", "test_slurm_multinode.py"})


def xdist_work_unit(nodeid: str) -> str:
    """The xdist work unit of a test: its file, or "slurm" for every Slurm file together."""
    path = nodeid.split("::", 1)[0]
    return "slurm" if Path(path).name in SLURM_TEST_FILES else path


try:
    from xdist.scheduler import LoadFileScheduling
except ImportError:  # pytest-xdist is a dev dependency; without it the suite runs serially
    pass
else:

    class FileOrSlurmScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_work_unit(nodeid)

    @pytest.hookimpl(optionalhook=True)  # known only while the xdist plugin is loaded (not under -p no:xdist)
    def pytest_xdist_make_scheduler(config, log):
        """Each file on one worker (its module fixtures built once, its tests in order), the
        Slurm files all on one, whatever --dist says. xdist's --dist loadgroup cannot do this
        under pytest 9: it renames ``item._nodeid``, which pytest 9 no longer reads, so its
        groups are silently ignored."""
        return FileOrSlurmScheduling(config, log)


def gandist_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")  # two test processes on two cores: no oversubscription
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    if extra:
        env.update(extra)
    return env


def run_gandist(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m gandist ARGS`` from this checkout and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "gandist", *map(str, args)],
        cwd=cwd or REPO_ROOT, env=gandist_env(env), capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def gandist_cache(tmp_path_factory) -> Path:
    """One cache directory for the built-in dataset, shared by every test of the session."""
    cache = tmp_path_factory.mktemp("gandist-cache")
    os.environ["GANDIST_CACHE"] = str(cache)
    return cache


@pytest.fixture
def run(gandist_cache):
    """``run(*args)`` -> CompletedProcess of ``python -m gandist`` with the shared dataset cache."""

    def _run(*args, env=None, timeout=300):
        return run_gandist(*args, env={"GANDIST_CACHE": str(gandist_cache), **(env or {})}, timeout=timeout)

    return _run


def slurm_problem() -> str | None:
    """Why the Slurm tests cannot run here (None when a controller answers with a usable node)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed (no sinfo/sbatch; CI starts one with scripts/slurm_up.sh where available)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return f"sinfo failed: no Slurm controller answers ({proc.stderr.strip()})"
    if not re.search(r"idle|mixed|allocated", proc.stdout):
        return f"no usable Slurm node (states: {proc.stdout.split()})"
    return None


MULTINODE_ON = REPO_ROOT / "scripts" / "slurm_multinode_on.sh"


def multinode_problem() -> str | None:
    """Why the two-node cluster of scripts/slurm_multinode_up.sh cannot be used (None when both
    of its nodes answer as usable)."""
    proc = subprocess.run(["bash", str(MULTINODE_ON), "sinfo", "-h", "-N", "-o", "%N %T"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return f"the two-node test cluster is not running ({proc.stderr.strip()}): sudo bash scripts/slurm_multinode_up.sh"
    states = dict(line.split()[:2] for line in proc.stdout.splitlines() if line.strip())
    if not all(re.match(r"idle|mixed|allocated", states.get(node, "")) for node in ("node1", "node2")):
        return f"the two-node test cluster has no two usable nodes (states: {states})"
    return None


def in_ci() -> bool:
    """True under CI (``CI=true``, as GitHub Actions, GitLab and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_unless_ci(reason: str) -> None:
    """Skip with ``reason`` on a developer machine; under CI fail instead: a service the CI
    machine is supposed to provide (the local Slurm, a root-only tmpfs) must not silently take
    its tests away while CI stays green."""
    if in_ci():
        pytest.fail(f"CI=true: this test's service is unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def require_slurm() -> None:
    problem = slurm_problem()
    if problem:
        skip_unless_ci(problem)


@pytest.fixture
def root_tmpfs(tmp_path):
    """``mount(size_kib, options="") -> Path``: a fresh tmpfs under tmp_path (needs root), unmounted at the end."""
    mounted: list[Path] = []

    def mount(size_kib: int, options: str = "") -> Path:
        if os.geteuid() != 0:
            skip_unless_ci("mounting a tmpfs needs root")
        mnt = tmp_path / f"tmpfs{len(mounted)}"
        mnt.mkdir()
        opts = f"size={size_kib}k" + (f",{options}" if options else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True, text=True)
        if proc.returncode != 0:
            skip_unless_ci(f"cannot mount tmpfs: {proc.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
