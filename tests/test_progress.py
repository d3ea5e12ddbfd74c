"""Progress with ETA: a tqdm bar on a terminal, plain lines every N seconds elsewhere (no
carriage-return flood in log files), for train, classify, synth, shards verify and eval."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from conftest import REPO_ROOT, gandist_env
from gandist.progress import PlainProgress, progress_bar


def test_plain_progress_lines_have_counts_rate_and_eta():
    out = io.StringIO()
    bar = PlainProgress(10, "classify", unit="step", file=out, interval_sec=0.0)
    bar.update(3)
    bar.set_postfix({"D": "0.5"})
    bar.update(7)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("classify: 3/10 step (30%), ") and "ETA " in lines[0]
    assert lines[1].startswith("classify: 10/10 step (100%), ") and "ETA" not in lines[1] and lines[1].endswith("| D=0.5")
    assert "\r" not in out.getvalue()


def test_plain_progress_waits_for_its_interval():
    out = io.StringIO()
    with PlainProgress(1000, "train", file=out, interval_sec=3600) as bar:
        for _ in range(1000):
            bar.update()
    assert out.getvalue().count("\n") == 1  # only the final line


def test_bar_kind_follows_the_output():
    assert isinstance(progress_bar(5, "x", file=io.StringIO()), PlainProgress)
    with open(os.devnull, "w") as devnull:
        silent = progress_bar(5, "x", file=devnull, enabled=False)
        silent.update(5)
        silent.close()


def run_in_terminal(args: list[str], env: dict) -> str:
    """Run ``python -m gandist ARGS`` with a pseudo-terminal as stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "gandist", *args], cwd=REPO_ROOT, env=env, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def digits_splits(tmp_path_factory, gandist_cache):
    from conftest import run_gandist

    root = tmp_path_factory.mktemp("progress")
    for split in ("train", "test"):
        p = run_gandist("shards", "make", "--builtin", "digits", "--split", split, "--out", str(root / split),
                        env={"GANDIST_CACHE": str(gandist_cache)})
        assert p.returncode == 0, p.stderr
    return root


CLASSIFY = ["--protocol", "real", "--seeds", "1", "--steps", "6", "--batch-size", "16"]


@pytest.mark.slow
def test_classify_shows_a_bar_on_a_terminal_and_lines_in_a_log(digits_splits, tmp_path):
    root = digits_splits
    args = ["classify", "--train", str(root / "train"), "--test", str(root / "test"), *CLASSIFY]
    terminal = run_in_terminal([*args, "--out", str(tmp_path / "a")], gandist_env())
    assert "classify: 100%|" in terminal and "6/6 [" in terminal  # tqdm's bar with elapsed<ETA
    assert "\r" in terminal

    env = gandist_env({"GANDIST_PROGRESS_INTERVAL_SEC": "0"})
    p = subprocess.run([sys.executable, "-m", "gandist", *args, "--out", str(tmp_path / "b")], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "classify: 6/6 step (100%)" in p.stderr and "ETA" in p.stderr and "\r" not in p.stderr

    quiet = subprocess.run([sys.executable, "-m", "gandist", *args, "--out", str(tmp_path / "c"), "--no-progress"], cwd=REPO_ROOT,
                           env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and "classify:" not in quiet.stderr


@pytest.mark.slow
def test_shards_verify_progress(digits_splits):
    env = gandist_env({"GANDIST_PROGRESS_INTERVAL_SEC": "0"})
    p = subprocess.run([sys.executable, "-m", "gandist", "shards", "verify", str(digits_splits / "test")], cwd=REPO_ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "shards verify: 359/359 img (100%)" in p.stderr


@pytest.mark.slow
def test_train_redirected_to_a_file_writes_little(tmp_path, gandist_cache):
    """The README's first command with its output in a file: plain lines, no carriage returns."""
    env = gandist_env({"GANDIST_CACHE": str(gandist_cache), "GANDIST_PROGRESS_INTERVAL_SEC": "2"})
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, "-m", "gandist", "train", "--run-dir", str(tmp_path / "run"), "train.steps=150",
                            "model.g_width=8", "model.d_width=8", "train.batch_size=16", "log.sample_every_steps=0"],
                           cwd=REPO_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=600)
    text = log.read_text()
    assert p.returncode == 0, text[-3000:]
    assert "\r" not in text
    assert "train: 150/150 step (100%)" in text
    progress_lines = [line for line in text.splitlines() if line.startswith("train: ")]
    assert 1 <= len(progress_lines) <= 150 // 2  # not one per step
