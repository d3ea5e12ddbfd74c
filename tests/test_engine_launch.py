"""launch/run.sh picks the launcher and its arguments from --procs, the GPU count and Slurm's
variables (rendered with GANDIST_LAUNCH_PRINT=1, so no processes start), and the launch configs
are valid Accelerate configs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_SH = REPO_ROOT / "launch" / "run.sh"


def _render(*args: str, env: dict[str, str] | None = None) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    # No nvidia-smi on PATH: the CPU paths (the GPU count is 0).
    base.update({"GANDIST_LAUNCH_PRINT": "1", "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}, **(env or {}))
    proc = subprocess.run(["bash", str(RUN_SH), *args], env=base, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout)


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_one_process_runs_gandist_without_a_launcher():
    cmd = _render("--run-dir", "r", "train.steps=3")
    assert cmd == [sys.executable, "-m", "gandist", "train", "--run-dir", "r", "train.steps=3"]


def test_two_cpu_processes_use_the_cpu_config():
    cmd = _render("--procs", "2", "engine.kind=zero")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert _flag(cmd, "--config_file").endswith("launch/cpu_2proc.yaml")
    assert _flag(cmd, "--num_processes") == "2"
    assert cmd[-4:] == ["-m", "gandist", "train", "engine.kind=zero"]


def test_multi_node_from_slurm_variables():
    env = {"SLURM_NNODES": "3", "SLURM_NODEID": "2", "SLURM_JOB_NODELIST": "gpu[03-05]", "MASTER_PORT": "29555"}
    cmd = _render("--procs", "4", "--run-dir", "r", env=env)
    assert _flag(cmd, "--config_file").endswith("launch/multi_node.yaml")
    assert _flag(cmd, "--num_machines") == "3"
    assert _flag(cmd, "--num_processes") == "12"  # all nodes' processes
    assert _flag(cmd, "--machine_rank") == "2"
    assert _flag(cmd, "--main_process_ip") == "gpu03"
    assert _flag(cmd, "--main_process_port") == "29555"


def test_bad_procs_is_a_usage_error():
    proc = subprocess.run(["bash", str(RUN_SH), "--procs", "two"], capture_output=True, text=True,
                          env={**os.environ, "GANDIST_LAUNCH_PRINT": "1"})
    assert proc.returncode == 2 and "--procs must be a positive integer" in proc.stderr


def test_launcher_gets_signal_forwarding_and_a_long_shutdown_timeout(tmp_path):
    # A stand-in interpreter that reports the environment run.sh execs it with (docs/library_notes.md, note 9).
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$PET_SIGNALS_TO_HANDLE|$TORCH_ELASTIC_SHUTDOWN_TIMEOUT|$*"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PET_SIGNALS_TO_HANDLE", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT")}
    proc = subprocess.run(["bash", str(RUN_SH), "train.steps=1"], env={**env, "PYTHON": str(fake), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    signals, timeout_sec, args = proc.stdout.strip().split("|")
    assert set(signals.split(",")) == {"SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"}
    # The same list as the sbatch scripts, so a signal a job script forwards is never lost here.
    for script in sorted((RUN_SH.parents[1] / "slurm").glob("train_*.sbatch")):
        listed = re.search(r'PET_SIGNALS_TO_HANDLE="([A-Z0-9,]+)"', script.read_text()).group(1)
        assert set(listed.split(",")) == set(signals.split(",")), script.name
    assert int(timeout_sec) >= 300
    assert args == "-m gandist train train.steps=1"


@pytest.mark.parametrize("name", ["single_gpu", "one_node", "multi_node", "cpu_2proc"])
def test_launch_configs_load_in_accelerate(name):
    from accelerate.commands.config.config_args import ClusterConfig

    path = REPO_ROOT / "launch" / f"{name}.yaml"
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.mixed_precision == "no"  # precision is gandist's train.mixed_precision
    assert yaml.safe_load(path.read_text())["num_machines"] >= 1
