"""Checkpoint faults on the real Checkpointer and engine: a save killed mid-write, a flipped
byte, a garbage ``latest``, retention, and a full disk."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import skip_unless_ci

from gandist.checkpoint import Checkpointer, CheckpointSaveError, load_tensor_file, save_tensor_file, verify_checkpoint
from gandist.config import Config
from gandist.engine import build_engine
from gandist.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    eng = build_engine(Config(), tmp_path_factory.mktemp("engine"))  # one process, no process group
    assert eng.world_size == 1
    return eng


def save(ckpt: Checkpointer, step: int, numel: int = 1000, during=None) -> Path:
    def write_main(tmp: Path) -> None:
        if during is not None:
            during(tmp)
        save_tensor_file({"w": torch.full((numel,), float(step))}, tmp / "model.pt")

    def write_rank(tmp: Path) -> None:
        save_tensor_file({"rank": 0}, tmp / "rank" / "00000.pt")

    return ckpt.save(step, write_main, write_rank)


def steps_on_disk(root: Path) -> list[int]:
    return sorted(int(p.name[5:]) for p in root.glob("step_*") if not p.name.endswith(".tmp"))


def test_retention_is_exact_and_prunes_only_after_commit(engine, tmp_path):
    ckpt = Checkpointer(tmp_path, engine, keep=3, keep_every_steps=4)
    seen_during_write: dict[int, list[int]] = {}
    for step in range(1, 11):
        save(ckpt, step, during=lambda tmp, s=step: seen_during_write.__setitem__(s, steps_on_disk(tmp.parent)))
    # Newest 3 (8, 9, 10) plus the multiples of 4 (4, 8).
    assert steps_on_disk(ckpt.root) == [4, 8, 9, 10]
    assert (ckpt.root / "latest").read_text().strip() == "step_00000010"
    # While step 10 was being written, everything kept after step 9 was still there.
    assert seen_during_write[10] == [4, 7, 8, 9]
    assert seen_during_write[4] == [1, 2, 3]
    assert not list(ckpt.root.glob("*.tmp"))


def test_flipped_byte_falls_back_to_previous_and_says_so(engine, tmp_path):
    ckpt = Checkpointer(tmp_path, engine, keep=3)
    for step in (5, 10):
        save(ckpt, step)
    model = ckpt.root / "step_00000010" / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    messages: list[str] = []
    found = ckpt.find_resumable(log=messages.append)
    assert found == ckpt.root / "step_00000005"
    assert load_tensor_file(found / "model.pt")["w"][0].item() == 5.0
    assert any("skipping damaged checkpoint" in m and "step_00000010" in m and "sha256" in m for m in messages)
    assert any("using checkpoint" in m and "step_00000005" in m for m in messages)


def test_garbage_latest_falls_back_to_scanning(engine, tmp_path):
    ckpt = Checkpointer(tmp_path, engine, keep=2)
    save(ckpt, 3)
    save(ckpt, 6)
    (ckpt.root / "latest").write_text("../../etc/passwd\n")
    messages: list[str] = []
    assert ckpt.find_resumable(log=messages.append) == ckpt.root / "step_00000006"
    assert any("does not name a committed checkpoint" in m for m in messages)


def test_all_damaged_is_an_error_naming_each(engine, tmp_path):
    ckpt = Checkpointer(tmp_path, engine, keep=2)
    save(ckpt, 1)
    save(ckpt, 2)
    for step in (1, 2):
        (ckpt.root / f"step_{step:08d}" / "model.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"(?s)no usable checkpoint.*step_00000002.*step_00000001"):
        ckpt.find_resumable(log=lambda m: None)


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    from gandist.checkpoint import Checkpointer, save_tensor_file
    from gandist.config import Config
    from gandist.engine import build_engine

    run_dir, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    ckpt = Checkpointer(run_dir, build_engine(Config(), run_dir), keep=2)

    def write_main(tmp):
        save_tensor_file({"w": torch.full((1000,), float(step))}, tmp / "model.pt")
        if step == kill_at:
            with open(tmp / "optim.pt", "wb") as f:  # a large file, half written when the kill comes
                f.write(b"x" * 100_000)
                f.flush()
                print("writing", flush=True)
                time.sleep(60)

    for step in range(1, kill_at + 1):
        ckpt.save(step, write_main, lambda tmp: None)
    """
)


def test_kill_9_during_save_keeps_latest_complete_and_resumable(engine, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), "4"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # other lines: library warnings (deepspeed prints to stdout)
            if line.strip() == "writing":
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    root = tmp_path / "ckpt"
    assert (root / "step_00000004.tmp" / "optim.pt").is_file()  # the kill really hit mid-save
    assert (root / "latest").read_text().strip() == "step_00000003"
    assert steps_on_disk(root) == [2, 3]  # keep=2: the killed save pruned nothing
    assert verify_checkpoint(root / "step_00000003") is None
    ckpt = Checkpointer(tmp_path, engine, keep=2)
    found = ckpt.find_resumable(log=lambda m: None)
    assert found == root / "step_00000003"
    assert load_tensor_file(found / "model.pt")["w"][0].item() == 3.0
    # The next save clears the half-written folder and commits normally.
    save(ckpt, 4)
    assert not list(root.glob("*.tmp"))
    assert steps_on_disk(root) == [3, 4]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs (needs root); else skip: the 2-process test below injects the fault
    the same way, so this path is only as portable as mount(8)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        skip_unless_ci("mounting a tiny tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        skip_unless_ci(f"cannot mount tmpfs: {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_names_the_path_and_keeps_the_previous_checkpoint(engine, tiny_disk):
    ckpt = Checkpointer(tiny_disk, engine, keep=2)
    save(ckpt, 1, numel=1000)
    with pytest.raises(CheckpointSaveError) as err:
        save(ckpt, 2, numel=1_000_000)  # 4 MB into 512 KiB
    msg = str(err.value)
    assert "disk full" in msg and str(ckpt.root / "step_00000002.tmp") in msg
    assert "step_00000001 is intact" in msg
    assert (ckpt.root / "latest").read_text().strip() == "step_00000001"
    assert steps_on_disk(ckpt.root) == [1] and not list(ckpt.root.glob("*.tmp"))
    assert ckpt.find_resumable(log=lambda m: None) == ckpt.root / "step_00000001"


def test_save_tensor_file_reports_enospc_not_torch_internal_error(tiny_disk):
    with pytest.raises(OSError) as err:
        save_tensor_file({"w": torch.zeros(1_000_000)}, tiny_disk / "big.pt")
    assert err.value.errno == errno.ENOSPC
