"""What the launcher and the machine tell a process: accelerate launch's mixed precision, and the
thread budget under a restricted CPU affinity mask."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO_ROOT, gandist_env
from gandist.errors import ConfigError
from gandist.runtime import cpus_available, default_num_workers, explicit_keys, resolve_mixed_precision, thread_budget

# Launcher precision ------------------------------------------------------------------------------


def test_launcher_precision_fills_the_default_and_conflicts_are_refused():
    env = {"ACCELERATE_MIXED_PRECISION": "bf16"}
    assert resolve_mixed_precision("no", False, env)[0] == "bf16"
    assert resolve_mixed_precision("bf16", True, env) == ("bf16", "")
    # accelerate launch always sets the variable; "no" from it is no request.
    assert resolve_mixed_precision("bf16", True, {"ACCELERATE_MIXED_PRECISION": "no"}) == ("bf16", "")
    assert resolve_mixed_precision("no", False, {}) == ("no", "")
    with pytest.raises(ConfigError, match=r"train.mixed_precision=fp16 conflicts with the launcher's --mixed_precision bf16"):
        resolve_mixed_precision("fp16", True, env)
    with pytest.raises(ConfigError, match=r"train.mixed_precision=no conflicts"):
        resolve_mixed_precision("no", True, env)  # written out: the user meant it
    with pytest.raises(ConfigError, match=r"ACCELERATE_MIXED_PRECISION=fp8"):
        resolve_mixed_precision("no", False, {"ACCELERATE_MIXED_PRECISION": "fp8"})


def test_explicit_keys_come_from_the_yaml_and_the_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"mixed_precision": "no", "steps": 3}}))
    assert explicit_keys(path, ["model.z_dim=4"]) == {"train.mixed_precision", "train.steps", "model.z_dim"}
    assert "train.mixed_precision" not in explicit_keys(None, ["train.steps=2"])


def test_train_takes_the_launchers_precision(run, tmp_path):
    p = run("train", "--dry-run", "train.steps=2", env={"ACCELERATE_MIXED_PRECISION": "bf16"})
    assert p.returncode == 0, p.stderr
    assert "train.mixed_precision=bf16 from the launcher" in p.stdout
    assert yaml.safe_load(p.stdout.split("resolved config:\n", 1)[1])["train"]["mixed_precision"] == "bf16"


def test_train_refuses_a_conflict_with_exit_2(run, tmp_path):
    config = tmp_path / "fp16.yaml"
    config.write_text("train:\n  mixed_precision: fp16\n")
    p = run("train", "--dry-run", "--config", config, env={"ACCELERATE_MIXED_PRECISION": "bf16"})
    assert p.returncode == 2
    assert "train.mixed_precision=fp16 conflicts with the launcher's --mixed_precision bf16" in p.stderr


# Thread budget -----------------------------------------------------------------------------------


def test_budget_divides_the_cpus_among_local_ranks():
    cpus = cpus_available({})
    assert thread_budget({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "8"}) == (3, "OMP_NUM_THREADS")
    assert thread_budget({})[0] == cpus
    assert thread_budget({"LOCAL_WORLD_SIZE": str(cpus)})[0] == 1
    assert thread_budget({"LOCAL_WORLD_SIZE": str(4 * cpus)})[0] == 1  # never 0
    assert thread_budget({"SLURM_CPUS_PER_TASK": "1"}) == (1, "CPU affinity, SLURM_CPUS_PER_TASK")
    assert default_num_workers({"SLURM_CPUS_PER_TASK": "1"}) == 0
    assert default_num_workers({"SLURM_CPUS_PER_TASK": "64"}) == min(cpus - 1, 4)


PROBE = """
import os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one CPU, as taskset -c would leave us
from gandist.runtime import apply_thread_budget
print("budget", *apply_thread_budget())
import torch
print("torch", torch.get_num_threads())
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_torch_threads_follow_a_restricted_affinity_mask():
    env = gandist_env()
    env.pop("OMP_NUM_THREADS")  # gandist_env sets 1 for the test suite; here the mask must decide
    p = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "budget 1 CPU affinity" in p.stdout and "torch 1" in p.stdout
    # The same through the CLI, after torch was imported (set_num_threads), with two local ranks
    # sharing every CPU this machine gives us.
    probe = (
        "import os, torch\n"
        "from gandist.runtime import apply_thread_budget, cpus_available\n"
        "os.environ['LOCAL_WORLD_SIZE'] = str(cpus_available())\n"
        "apply_thread_budget(); print('torch', torch.get_num_threads())\n"
    )
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "torch 1"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_train_reports_its_budget_under_taskset(run):
    env = gandist_env({"LOCAL_WORLD_SIZE": "1"})
    env.pop("OMP_NUM_THREADS")
    cpu = min(os.sched_getaffinity(0))
    cmd = [sys.executable, "-c", f"import os, sys; os.sched_setaffinity(0, {{{cpu}}}); from gandist.cli import main; sys.exit(main(sys.argv[1:]))",
           "train", "--dry-run"]
    p = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "torch threads per process: 1 (CPU affinity)" in p.stdout


def test_real_accelerate_launch_passes_its_precision(tmp_path):
    env = gandist_env()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", "--mixed_precision", "bf16",
           "-m", "gandist", "train", "--dry-run", "train.steps=3"]
    p = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert yaml.safe_load(p.stdout.split("resolved config:\n", 1)[1])["train"]["mixed_precision"] == "bf16"
