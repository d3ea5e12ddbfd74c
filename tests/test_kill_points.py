"""kill -9 at every commit point of a checkpoint save: after the manifest is written, after the
folder is renamed into place, after ``latest`` is replaced, and inside the ``best`` links. Each
time the run directory keeps a checkpoint that verifies, ``best`` is the old or the new one (never
missing or half), and the next save cleans up and commits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gandist.checkpoint import Checkpointer, load_tensor_file, save_tensor_file, verify_checkpoint
from gandist.config import Config
from gandist.engine import build_engine

REPO = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent(
    """
    import os, signal, sys, torch
    from pathlib import Path
    import gandist.checkpoint as C
    from gandist.config import Config
    from gandist.engine import build_engine

    run_dir, point = Path(sys.argv[1]), sys.argv[2]
    ckpt = C.Checkpointer(run_dir, build_engine(Config(), run_dir), keep=2)
    armed = False

    def kill_if(hit):
        if armed and hit:
            os.kill(os.getpid(), signal.SIGKILL)

    write_bytes, replace = C.atomic_write_bytes, os.replace

    def atomic_write_bytes(path, data, *a, **k):
        write_bytes(path, data, *a, **k)
        kill_if({"after_manifest": "MANIFEST.json", "after_latest": "latest", "after_best_json": "BEST.json"}.get(point) == Path(path).name)

    def os_replace(src, dst):
        replace(src, dst)
        name = Path(dst).name
        kill_if((point == "after_rename" and name.startswith("step_") and not name.endswith(".tmp"))
                or (point == "after_best_moved_aside" and name == "best.old")
                or (point == "after_best_in_place" and name == "best"))

    C.atomic_write_bytes, os.replace = atomic_write_bytes, os_replace

    def save(step):
        def write_main(tmp):
            C.save_tensor_file({"w": torch.full((1000,), float(step))}, tmp / "model.pt")
        return ckpt.save(step, write_main, lambda tmp: None)

    for step in (1, 2, 3):
        path = save(step)
        if step == 2:
            ckpt.mark_best(path, {"step": 2, "fid": 9.0})
    armed = True
    ckpt.mark_best(save(4), {"step": 4, "fid": 5.0})
    print("no kill point was reached", flush=True)
    """
)

POINTS = ["after_manifest", "after_rename", "after_latest", "after_best_json", "after_best_moved_aside", "after_best_in_place"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return build_engine(Config(), tmp_path_factory.mktemp("engine"))


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_at_each_commit_point_keeps_a_good_checkpoint_and_best(engine, tmp_path, point):
    proc = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), point], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    ckpt = Checkpointer(tmp_path, engine, keep=2)
    found = ckpt.find_resumable(log=lambda m: None)
    assert found is not None and verify_checkpoint(found) is None
    step = Checkpointer.step_of(found)
    assert step == (3 if point in ("after_manifest", "after_rename") else 4), found
    assert load_tensor_file(found / "model.pt")["w"][0].item() == float(step)

    best = ckpt.read_best()
    expected_best = 4 if point in ("after_best_in_place",) else 2
    assert best is not None and best["step"] == expected_best, best
    assert verify_checkpoint(ckpt.root / "best") is None
    assert load_tensor_file(ckpt.root / "best" / "model.pt")["w"][0].item() == float(best["step"])

    # The next save and best mark clean up whatever the kill left, and commit.
    def write_main(tmp):
        save_tensor_file({"w": __import__("torch").full((1000,), 5.0)}, tmp / "model.pt")

    path = ckpt.save(5, write_main, lambda tmp: None)
    ckpt.mark_best(path, {"step": 5, "fid": 1.0})
    leftovers = sorted(p.name for p in ckpt.root.iterdir() if p.name.endswith((".tmp", ".old")))
    assert leftovers == [], leftovers
    assert ckpt.find_resumable(log=lambda m: None) == ckpt.root / "step_00000005"
    assert ckpt.read_best()["step"] == 5
