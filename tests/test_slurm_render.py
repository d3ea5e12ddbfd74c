"""The sbatch scripts rendered without Slurm: GANDIST_DRY_RUN=1 prints the launch commands a
job with the given SLURM_* environment would run (the multi-node script cannot run here)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "slurm"
SCRIPTS = ["train_single_node.sbatch", "train_multi_node.sbatch", "make_shards.sbatch"]


def render(script: str, args: list[str], **env: str) -> list[str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "GANDIST_DRY_RUN": "1",
            "SLURM_SUBMIT_DIR": "/submit/dir"}
    proc = subprocess.run(["bash", str(SLURM / script), *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def launch_args(line: str) -> list[str]:
    return shlex.split(line.split(": ", 1)[1] if line.startswith("node ") else line)


def opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_and_carry_the_preemption_directives(script):
    text = (SLURM / script).read_text()
    subprocess.run(["bash", "-n", str(SLURM / script)], check=True)
    assert "#SBATCH --requeue" in text and "#SBATCH --open-mode=append" in text
    if script.startswith("train"):
        assert "#SBATCH --signal=B:USR1@120" in text
        assert "PET_SIGNALS_TO_HANDLE" in text and "SIGUSR1" in text


def test_single_node_passes_arguments_through_and_counts_processes():
    args = ["--run-dir", "runs/a b", "train.steps=7", "model.name=mlp"]
    cpu = launch_args(render("train_single_node.sbatch", args, SLURM_JOB_ID="9")[-1])
    assert cpu[cpu.index("gandist") - 1] == "-m" and cpu[cpu.index("gandist") + 1] == "train"
    assert cpu[cpu.index("train") + 1:] == args  # quoting survives ("runs/a b" stays one argument)
    assert opt(cpu, "--num_processes") == "2"  # no GPUs: two CPU processes
    assert "--multi_gpu" in cpu  # through torchrun, which forwards signals, even for one process
    assert cpu[:3] == ["python", "-m", "accelerate.commands.launch"]

    gpus = launch_args(render("train_single_node.sbatch", [], SLURM_GPUS_ON_NODE="4", CUDA_VISIBLE_DEVICES="0,1,2,3")[-1])
    assert opt(gpus, "--num_processes") == "4"
    visible = launch_args(render("train_single_node.sbatch", [], CUDA_VISIBLE_DEVICES="2,5,7")[-1])
    assert opt(visible, "--num_processes") == "3"
    forced = launch_args(render("train_single_node.sbatch", ["x=1"], SLURM_GPUS_ON_NODE="4", GANDIST_PROCS_PER_NODE="3",
                                GANDIST_PYTHON="/opt/venv/bin/python")[-1])
    assert opt(forced, "--num_processes") == "3" and forced[0] == "/opt/venv/bin/python"
    one = launch_args(render("train_single_node.sbatch", ["x=1"], SLURM_GPUS_ON_NODE="1")[-1])
    assert one == ["python", "-m", "gandist", "train", "x=1"]  # no launcher for one process


def test_multi_node_renders_one_launcher_per_node():
    env = {"SLURM_JOB_ID": "4242", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_GPUS_ON_NODE": "8"}
    if shutil.which("scontrol") is None:  # hostlist expansion needs scontrol (no controller)
        env["GANDIST_MASTER_ADDR"] = "gpu07"
    out = render("train_multi_node.sbatch", ["--run-dir", "/shared/run", "train.steps=5"], **env)
    assert "2 nodes x 8 processes, master gpu07:24242" in out[0]
    srun = shlex.split(out[1])
    assert srun[0] == "srun" and "--nodes=2" in srun and "--ntasks-per-node=1" in srun
    assert srun[-3:] == ["--run-dir", "/shared/run", "train.steps=5"]
    nodes = [launch_args(line) for line in out[2:]]
    assert [line.split(":")[0] for line in out[2:]] == ["node 0", "node 1"]
    for node_id, argv in enumerate(nodes):
        assert opt(argv, "--machine_rank") == str(node_id)
        assert opt(argv, "--num_machines") == "2"
        assert opt(argv, "--num_processes") == "16"  # world size: 2 nodes x 8
        assert opt(argv, "--main_process_ip") == "gpu07"
        assert opt(argv, "--main_process_port") == "24242"
        assert argv[argv.index("gandist"):] == ["gandist", "train", "--run-dir", "/shared/run", "train.steps=5"]


def test_multi_node_port_and_address_overrides():
    out = render("train_multi_node.sbatch", [], SLURM_JOB_ID="1", SLURM_NNODES="3", SLURM_JOB_NODELIST="n[1-3]",
                 GANDIST_MASTER_ADDR="10.0.0.5", GANDIST_MASTER_PORT="31337", GANDIST_PROCS_PER_NODE="2")
    node2 = launch_args(out[-1])
    assert opt(node2, "--machine_rank") == "2" and opt(node2, "--num_processes") == "6"
    assert opt(node2, "--main_process_ip") == "10.0.0.5" and opt(node2, "--main_process_port") == "31337"


def test_make_shards_slices_by_array_task():
    env = {"SLURM_ARRAY_JOB_ID": "900", "SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4",
           "SLURM_ARRAY_TASK_MAX": "7", "SLURM_ARRAY_TASK_COUNT": "4"}
    out = render("make_shards.sbatch", ["--from", "/data/imgs", "--out=/data/shards", "--resize", "32"], **env)
    make = shlex.split(out[1])
    assert make[make.index("gandist"):make.index("gandist") + 3] == ["gandist", "shards", "make"]
    assert opt(make, "--from") == "/data/imgs" and opt(make, "--resize") == "32"
    assert opt(make, "--out") == "/data/shards/parts/00001" and opt(make, "--slice") == "1/4"
    merge = shlex.split(out[2].replace("<", "").replace(">", ""))
    assert opt(merge, "--out") == "/data/shards" and "merge" in merge


def test_make_shards_refuses_without_array_or_out():
    proc = subprocess.run(["bash", str(SLURM / "make_shards.sbatch"), "--out", "x"], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 2 and "--array" in proc.stderr
    proc = subprocess.run(["bash", str(SLURM / "make_shards.sbatch"), "--from", "x"], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "1"})
    assert proc.returncode == 2 and "--out DIR is required" in proc.stderr
