"""Every bad input ends with exit 2 and a message naming the field, file or shard (issue 13,
items 3-7), checked through the CLI's own ``main`` (in process: no traceback may escape it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from data_helpers import collect, write_uneven
from gandist.cli import main
from gandist.config import DataConfig
from gandist.data.manifest import MANIFEST_NAME
from gandist.errors import DataError


def _cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("override, field", [
    ("optim.lr_g=.inf", "optim.lr_g"), ("optim.lr_d=.inf", "optim.lr_d"), ("optim.lr_g=.nan", "optim.lr_g"),
    ("train.seed=-1", "train.seed"), ("train.seed=1e30", "train.seed"), ("train.seed=4294967296", "train.seed"),
    ("metrics.seed=-5", "metrics.seed"), ("engine.timeout_minutes=.inf", "engine.timeout_minutes"),
    ("train.steps=1.0e+30", "train.steps"), ("optim.beta1=-.inf", "optim.beta1"),
])
def test_out_of_range_numbers_exit_2_at_dry_run(capsys, override, field):
    code, out = _cli(capsys, "train", "--dry-run", override)
    assert code == 2, out
    assert f"gandist train: error: {field}:" in out


@pytest.mark.parametrize("pattern", ["{", "shards/shard-{000000..000003.tar", "s3://bucket/shard-}.tar"])
def test_unbalanced_brace_pattern_in_data_path_exits_2_naming_it(tmp_path, capsys, pattern):
    # Found by tests/test_property_inputs.py: braceexpand's own error escaped as a traceback.
    message = f"data.path: {pattern!r} is not a valid shard pattern"
    code, out = _cli(capsys, "train", "--run-dir", tmp_path / "run", f"data.path={pattern}")
    assert code == 2 and message in out and "Traceback" not in out, out
    # A dry run checks a command line before its data exists: a note, not a failure.
    code, out = _cli(capsys, "train", "--dry-run", f"data.path={pattern}")
    assert code == 0 and message in out and "Traceback" not in out, out


def test_config_that_is_not_utf8_exits_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"train:\n  steps: \xff\xfe\n")
    code, out = _cli(capsys, "train", "--dry-run", "--config", path)
    assert code == 2 and f"--config: {path} is not UTF-8 text" in out


@pytest.mark.parametrize("text, where", [("1: 2\n", "config"), ("train:\n  7: 1\n", "train"), ("{[1]: 2}\n", "config")])
def test_yaml_keys_that_are_not_names_exit_2(tmp_path, capsys, text, where):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, out = _cli(capsys, "train", "--dry-run", "--config", path)
    assert code == 2, out
    assert f"error: {where}: keys must be field names" in out or "is not valid YAML" in out


def test_sample_out_naming_a_directory_exits_2_and_leaves_no_tmp(tmp_path, capsys):
    out_dir = tmp_path / "out.png"
    out_dir.mkdir()
    gen = _exported_generator(tmp_path)
    code, out = _cli(capsys, "sample", "--generator", gen, "--n", 4, "--out", out_dir)
    assert code == 2, out
    assert f"--out: {out_dir} is a directory" in out
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []
    assert list(out_dir.iterdir()) == []


def _exported_generator(tmp_path: Path) -> Path:
    """A tiny exported generator made without training (its weights are the initial ones)."""
    from safetensors.torch import save_file

    from gandist.models import ModelSpec, build_generator

    spec = ModelSpec(image_size=8, channels=1, num_classes=0, z_dim=4, g_width=8, d_width=8)
    g = build_generator("mlp", spec)
    meta = {"model_name": "mlp", "spec": spec.to_dict(), "num_classes": 0, "class_names": []}
    path = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(path), metadata={"gandist": json.dumps(meta)})
    return path


def test_full_disk_when_writing_config_exits_2_naming_the_file(root_tmpfs, capsys):
    mnt = root_tmpfs(8)
    run_dir = mnt / "run"
    run_dir.mkdir()
    fd = os.open(run_dir / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk: what is left is room for new inodes only
        while True:
            os.write(fd, b"x" * 1024)
    except OSError:
        pass
    finally:
        os.close(fd)
    code, out = _cli(capsys, "train", "--run-dir", run_dir, "train.steps=1")
    assert code == 2, out
    assert str(run_dir) in out and ("config.yaml" in out or "run.lock" in out) and "No space left" in out, out
    assert not (run_dir / "run.lock").exists()


# Shard manifests -------------------------------------------------------------------------------


@pytest.fixture
def shards(tmp_path) -> Path:
    return write_uneven(tmp_path / "d", [6, 5, 7])


def _edit(root: Path, change) -> None:
    m = json.loads((root / MANIFEST_NAME).read_text())
    change(m)
    (root / MANIFEST_NAME).write_text(json.dumps(m))


@pytest.mark.parametrize("damage, message", [
    (lambda m: m["shards"][1].pop("name"), "shards[1] has no file name"),
    (lambda m: m["shards"][0].update(num_samples="6"), "shard 000000.tar: num_samples must be a non-negative integer"),
    (lambda m: m["shards"][0].update(num_samples=6.5), "num_samples must be a non-negative integer"),
    (lambda m: m.update(shards={"a": 1}), "shards must be a list"),
    (lambda m: m.update(num_samples=-1), "num_samples must be a non-negative integer"),
    (lambda m: m["shards"][0].update(name="../../x.tar"), "points outside the data set's directory"),
    (lambda m: m["shards"][0].update(name="/etc/passwd"), "points outside the data set's directory"),
    (lambda m: m.update(num_samples=17), "num_samples is 17 but its shards' counts add up to 18"),
])
def test_bad_shard_manifest_exits_2_naming_the_field(shards, capsys, damage, message):
    _edit(shards, damage)
    for verb in (["shards", "verify", shards], ["shards", "inspect", shards], ["train", "--dry-run", f"data.path={shards}"]):
        code, out = _cli(capsys, *verb)
        if verb[0] == "train":  # a dry run checks the command line; the data it cannot read is a note
            assert code == 0 and "note: the data cannot be read yet" in out and message in out, out
            continue
        assert code == 2, f"{verb}: {out}"
        assert message in out and str(shards / MANIFEST_NAME) in out, f"{verb}: {out}"


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"[1, 2, 3]", b"\"text\""])
def test_binary_or_wrongly_shaped_manifest_exits_2(shards, capsys, content):
    (shards / MANIFEST_NAME).write_bytes(content)
    code, out = _cli(capsys, "shards", "verify", shards)
    assert code == 2, out
    assert str(shards / MANIFEST_NAME) in out and "Traceback" not in out


def test_manifest_shard_path_escaping_the_data_set_is_never_read(shards, tmp_path, capsys):
    outside = tmp_path / "secret.tar"
    (shards / "000000.tar").rename(outside)
    _edit(shards, lambda m: m["shards"][0].update(name="../secret.tar"))
    code, out = _cli(capsys, "shards", "verify", shards)
    assert code == 2 and "OK" not in out.split("error")[0]


@pytest.mark.parametrize("fmt", ["png", "blocks"])
def test_manifest_count_lower_than_the_shard_holds_stops_training_data(tmp_path, fmt):
    root = write_uneven(tmp_path / "d", [8, 8], fmt=fmt, block_size=4)

    def lower(m):  # consistent totals, but shard 1 holds 8 samples, not 4
        m["shards"][1]["num_samples"] = 4
        m["num_samples"] = 12
    _edit(root, lower)
    with pytest.raises(DataError, match=r"000001.tar holds more samples than the 4 its manifest lists"):
        collect(DataConfig(shuffle_buffer=0), root, world=1, batch=2)
