"""``shards make --slice I/N`` and ``shards merge``: slices partition exactly what one ``shards
make`` writes (same keys, same bytes, same order), merged parts form an ordinary shard directory
(verify, inspect, loader), mismatched parts are refused, and the job array in
``slurm/make_shards.sbatch`` does all of it on a real Slurm."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from data_helpers import collect, index_of, indexed_image
from gandist.cli import main
from gandist.config import DataConfig
from gandist.data import merge as merge_mod
from gandist.data import read_all
from gandist.data.merge import merge_parts
from gandist.data.verify import verify_dir
from gandist.errors import DataError
from conftest import require_slurm

REPO = Path(__file__).resolve().parents[1]


def make(*args: str) -> None:
    assert main(["shards", "make", *map(str, args), "--no-progress"]) == 0


def members(root: Path) -> list[tuple[str, bytes]]:
    """Every tar member (name, bytes) of a shard directory, in manifest order."""
    m = json.loads((root / "manifest.json").read_text())
    out = []
    for s in m["shards"]:
        with tarfile.open(root / s["name"]) as tf:
            out += [(t.name, tf.extractfile(t).read()) for t in tf.getmembers()]
    return out


def make_slices(tmp: Path, num_slices: int, *args: str) -> list[Path]:
    parts = [tmp / "parts" / f"{i:05d}" for i in range(num_slices)]
    for i, part in enumerate(parts):
        make(*args, "--out", part, "--slice", f"{i}/{num_slices}")
    return parts


@pytest.fixture(scope="module")
def arrays_npz(tmp_path_factory) -> Path:
    """96 8x8 grayscale images, each carrying its own index in its pixels, 3 classes."""
    d = tmp_path_factory.mktemp("npz")
    imgs = np.stack([indexed_image(i) for i in range(96)])[..., 0]
    np.savez(d / "a.npz", images=imgs, labels=np.arange(96) % 3, class_names=np.array(["a", "b", "c"]))
    return d / "a.npz"


@pytest.mark.slow
def test_digit_slices_partition_a_full_make_and_merge_to_a_verified_set(tmp_path):
    make("--builtin", "digits", "--out", tmp_path / "full")
    parts = make_slices(tmp_path, 3, "--builtin", "digits")
    full = members(tmp_path / "full")
    sliced = [members(p) for p in parts]
    assert [len(s) for s in sliced] == [2 * 599] * 3  # .png + .cls per sample, 1797 = 3 x 599
    assert sum(sliced, []) == full  # same keys, same bytes, same order: the union is the full make
    keys = [name.split(".")[0] for name, _ in full if name.endswith(".png")]
    assert len(set(keys)) == 1797

    out = tmp_path / "merged"
    assert main(["shards", "merge", "--out", str(out), *map(str, parts)]) == 0
    r = verify_dir(out)
    assert r["problems"] == [] and r["num_samples"] == 1797 and r["num_shards"] == 9 and not r["unlisted_shards"]
    assert members(out) == full
    m = json.loads((out / "manifest.json").read_text())
    f = json.loads((tmp_path / "full" / "manifest.json").read_text())
    for field in ("num_samples", "class_names", "class_counts", "image", "sample_format", "builtin", "seed", "split"):
        assert m[field] == f[field], field
    assert [p["slice"] for p in m["merged_from"]] == ["0/3", "1/3", "2/3"]
    assert m["command"].startswith("gandist shards merge") and "slice" not in m
    for shard in m["shards"]:  # hard links: no data copied, the parts stay intact
        assert os.path.samefile(out / shard["name"], out / shard["from"])  # out / absolute path = the absolute path
    assert main(["shards", "inspect", str(out), "--n", "4"]) == 0


def test_npz_block_slices_merge_and_the_loader_reads_every_sample_once(arrays_npz, tmp_path):
    opts = ["--from", arrays_npz, "--format", "blocks", "--block-size", "8", "--shard-size", "16", "--seed", "5"]
    make(*opts, "--out", tmp_path / "full")
    parts = make_slices(tmp_path, 4, *opts)
    full_imgs, full_labels = read_all(tmp_path / "full")
    pieces = [read_all(p) for p in parts]
    assert [len(lab) for _, lab in pieces] == [24, 24, 24, 24]
    assert np.array_equal(np.concatenate([i for i, _ in pieces]), full_imgs)
    assert np.array_equal(np.concatenate([lab for _, lab in pieces]), full_labels)
    assert sorted(index_of(x) for x in full_imgs) == list(range(96))

    out = tmp_path / "merged"
    result = merge_parts(out, parts)
    assert result.num_linked == 8 and result.manifest["block_size"] == 8 and result.manifest["num_samples"] == 96
    assert verify_dir(out)["problems"] == []
    imgs, labels = read_all(out)
    assert np.array_equal(imgs, full_imgs) and np.array_equal(labels, full_labels)
    # Training reads the merged directory like any other: over two ranks, every sample exactly
    # once per epoch, with its label.
    batches = [b for rank in (0, 1) for b in collect(DataConfig(shuffle_buffer=10), out, world=2, batch=8, rank=rank)]
    assert len(batches) == 12
    seen = sorted((index_of(x), int(y)) for imgs_b, labels_b in batches for x, y in zip(imgs_b, labels_b))
    assert seen == [(i, i % 3) for i in range(96)]


def test_folder_slices_partition_a_full_make(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in ("cat", "dog"):
        (tmp_path / "src" / c).mkdir(parents=True)
        for k in range(5):
            shape = (6, 7, 3) if c == "cat" else (5, 5, 3)  # mixed sizes: slices may each be uniform
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / "src" / c / f"{k}.png")
    opts = ["--from", tmp_path / "src", "--shard-size", "2"]
    make(*opts, "--out", tmp_path / "full")
    parts = make_slices(tmp_path, 3, *opts)
    assert sum((members(p) for p in parts), []) == members(tmp_path / "full")
    assert [json.loads((p / "manifest.json").read_text())["num_samples"] for p in parts] == [3, 3, 4]
    m = merge_parts(tmp_path / "merged", parts).manifest
    assert m["class_names"] == ["cat", "dog"] and m["class_counts"] == [5, 5] and m["source_kind"] == "imagefolder"
    assert m["image"] == json.loads((tmp_path / "full" / "manifest.json").read_text())["image"]
    assert m["image"]["uniform"] is False and (m["image"]["max_height"], m["image"]["max_width"]) == (6, 7)
    assert verify_dir(tmp_path / "merged")["problems"] == []


def _small_parts(tmp: Path, npz: Path, name: str, *args: str, num_slices: int = 2) -> list[Path]:
    return make_slices(tmp / name, num_slices, "--from", npz, "--shard-size", "30", *args)


def test_merge_refuses_parts_that_disagree(arrays_npz, tmp_path):
    good = _small_parts(tmp_path, arrays_npz, "good")
    z = np.load(arrays_npz)
    other_npz = tmp_path / "other.npz"
    np.savez(other_npz, images=z["images"], labels=z["labels"], class_names=np.array(["x", "y", "z"]))
    renamed = _small_parts(tmp_path, other_npz, "renamed")
    resized = _small_parts(tmp_path, arrays_npz, "resized", "--resize", "4")
    npy = _small_parts(tmp_path, arrays_npz, "npy", "--format", "npy")
    reseeded = _small_parts(tmp_path, arrays_npz, "reseeded", "--seed", "1")
    thirds = _small_parts(tmp_path, arrays_npz, "thirds", num_slices=3)
    make("--from", arrays_npz, "--out", tmp_path / "plain")
    make("--from", arrays_npz, "--out", tmp_path / "plain4", "--resize", "4")

    cases = [
        ([good[0], renamed[1]], rf"part {re.escape(str(renamed[1]))}: field class_names is \[\"x\""),
        ([good[0], resized[1]], r"made with options\.resize=4 but part .* with 0"),
        ([good[0], npy[1]], r"field sample_format is \"npy\" but .* has \"png\""),
        ([good[0], reseeded[1]], r"made with extra\.seed=1 but part .* with 0"),
        ([good[0], thirds[1]], r"field slice: 1/3, but part .* is 0/2"),
        ([good[0], good[0]], r"slice 0/2 is also part"),
        ([good[0]], r"slice\(s\) 1/2 missing: give all 2 parts"),
        ([good[0], tmp_path / "plain"], r"was not made with --slice"),
        ([good[0], tmp_path / "nothing"], r"not a directory"),
        ([tmp_path / "plain", tmp_path / "plain4"], r"field image is 4x4x1 \(HxWxC\) but part .*plain has 8x8x1"),
    ]
    for parts, pattern in cases:
        with pytest.raises(DataError, match=pattern):
            merge_parts(tmp_path / "out", parts)
    assert not (tmp_path / "out" / "manifest.json").exists()

    # An unfinished part (its make still running or interrupted) is not merged.
    (good[1] / ".progress.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match=r"part .*00001: incomplete"):
        merge_parts(tmp_path / "out", good)
    (good[1] / ".progress.jsonl").unlink()
    # A directory holding a `shards make` result is never overwritten.
    with pytest.raises(DataError, match=r"holds a shard set written by `shards make`"):
        merge_parts(tmp_path / "plain", good)
    assert main(["shards", "merge", "--out", str(tmp_path / "out"), str(good[0])]) == 2


def test_merge_again_is_a_no_op_and_an_interrupted_merge_finishes(arrays_npz, tmp_path, monkeypatch):
    parts = _small_parts(tmp_path, arrays_npz, "p", num_slices=3)  # 32 samples per slice: 2 shards each
    out = tmp_path / "out"
    first = merge_parts(out, parts)
    assert (first.num_linked, first.num_in_place) == (6, 0)
    before = (out / "manifest.json").read_bytes()
    again = merge_parts(out, parts)
    assert (again.num_linked, again.num_in_place) == (0, 6)
    assert (out / "manifest.json").read_bytes() == before  # unchanged file: its sha256 keys caches

    # Interrupted after two shards of a fresh merge: no manifest yet, the parts untouched.
    out2 = tmp_path / "out2"
    real_place, calls = merge_mod._place, []

    def dying_place(src, dst, entry):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(dst)
        return real_place(src, dst, entry)

    monkeypatch.setattr(merge_mod, "_place", dying_place)
    with pytest.raises(KeyboardInterrupt):
        merge_parts(out2, parts)
    monkeypatch.setattr(merge_mod, "_place", real_place)
    assert not (out2 / "manifest.json").exists() and (out2 / ".merge.json").exists()
    assert all(verify_dir(p)["problems"] == [] for p in parts)
    done = merge_parts(out2, parts)
    assert (done.num_in_place, done.num_linked) == (2, 4) and not (out2 / ".merge.json").exists()
    assert verify_dir(out2)["problems"] == [] and verify_dir(out2)["num_samples"] == 96

    # Where links are impossible (another filesystem) the shards are copied.
    def no_link(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    copied = merge_parts(tmp_path / "out3", parts)
    assert copied.num_copied == 6 and not os.path.samefile(tmp_path / "out3" / "000000.tar", parts[0] / "000000.tar")
    assert verify_dir(tmp_path / "out3")["problems"] == []

    # Merging fewer parts into the same directory removes the earlier merge's extra shards after
    # the new manifest is committed; a file merge did not write is never replaced.
    monkeypatch.undo()
    whole = _small_parts(tmp_path, arrays_npz, "whole", "--shard-size", "96", num_slices=1)
    assert merge_parts(out, whole).manifest["num_samples"] == 96
    assert sorted(p.name for p in out.glob("*.tar")) == ["000000.tar"] and verify_dir(out)["problems"] == []
    (tmp_path / "out4").mkdir()
    (tmp_path / "out4" / "000001.tar").write_bytes(b"mine")
    with pytest.raises(DataError, match="000001.tar exists and was not written by `shards merge`"):
        merge_parts(tmp_path / "out4", parts)
    assert (tmp_path / "out4" / "000001.tar").read_bytes() == b"mine"


@pytest.mark.parametrize("value", ["3/3", "1/0", "a/b", "2", "-1/3"])
def test_bad_slice_values_exit_2(value, arrays_npz, tmp_path, capsys):
    code = main(["shards", "make", "--from", str(arrays_npz), "--out", str(tmp_path / "o"), f"--slice={value}"])
    assert code == 2 and "--slice" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_bad_and_empty_slice_through_the_command_line(arrays_npz, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "gandist", "shards", "make", "--from", str(arrays_npz), "--out",
                        str(tmp_path / "o"), "--slice", "0/97"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--slice 0/97: this slice is empty: the input has only 96 item(s)" in r.stderr


# ---- the job array on a real Slurm ----------------------------------------------------------------

def _task_states(job: str) -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-r", "-j", job, "-o", "%i %T"], capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


@pytest.mark.slow
@pytest.mark.slurm
def test_job_array_writes_slices_and_merges(tmp_path):
    require_slurm()
    out, logs = tmp_path / "digits", tmp_path / "logs"
    logs.mkdir()
    env = dict(os.environ, GANDIST_PYTHON=sys.executable, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    # --cpus-per-task=1: the local node has 2 CPUs (the script asks for 4 by default).
    submit = subprocess.run(
        ["sbatch", "--parsable", "--array=0-2", "--cpus-per-task=1", "--time=10", "--export=ALL",
         f"--output={logs}/task-%a.out", str(REPO / "slurm" / "make_shards.sbatch"),
         "--builtin", "digits", "--out", str(out), "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    assert submit.returncode == 0, submit.stderr
    job = submit.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 300
        while True:
            states = _task_states(job)
            if len(states) == 3 and all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states.values()):
                break
            assert time.monotonic() < deadline, f"job array {job} did not finish: {states}"
            time.sleep(1)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    text = "".join(p.read_text() for p in sorted(logs.glob("task-*.out")))
    assert set(states.values()) == {"COMPLETED"}, text
    assert text.count("merged 3 part(s)") >= 1 and "1797 samples in 9 shard(s)" in text
    r = verify_dir(out)
    assert r["problems"] == [] and r["num_samples"] == 1797 and r["num_shards"] == 9
    m = json.loads((out / "manifest.json").read_text())
    assert [p["path"] for p in m["merged_from"]] == ["parts/00000", "parts/00001", "parts/00002"]
    assert [p["slice"] for p in m["merged_from"]] == ["0/3", "1/3", "2/3"]
    assert (out / "parts" / "slices").read_text().split() == ["3", "0"]  # for reruns of single tasks


def test_a_rerun_task_keeps_the_slicing_of_the_first_submission(tmp_path):
    """`sbatch --array=3 ...` (an array of one) after `--array=0-7` must still write slice 3/8."""
    def render(task: str, **env: str) -> subprocess.CompletedProcess:
        base = {"PATH": os.environ["PATH"], "GANDIST_DRY_RUN": "1", "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": task}
        return subprocess.run(["bash", str(REPO / "slurm" / "make_shards.sbatch"), "--builtin", "digits", "--out", str(tmp_path)],
                              env={**base, **env}, capture_output=True, text=True, timeout=30)

    alone = dict(SLURM_ARRAY_TASK_MIN="3", SLURM_ARRAY_TASK_MAX="3", SLURM_ARRAY_TASK_COUNT="1")
    assert "--slice 0/1" in render("3", **alone).stdout  # nothing recorded: the array alone decides
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "slices").write_text("8 0\n")  # what the first task of --array=0-7 records
    r = render("3", **alone)
    assert r.returncode == 0 and "--slice 3/8" in r.stdout and f"{tmp_path}/parts/00003" in r.stdout
    r = render("9", SLURM_ARRAY_TASK_MIN="9", SLURM_ARRAY_TASK_MAX="9", SLURM_ARRAY_TASK_COUNT="1")
    assert r.returncode == 2 and "outside tasks 0..7 of the first submission" in r.stderr
