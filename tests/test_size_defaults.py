"""The size rule: from 28 px up a conditional dcgan GAN gets spectral norm in D and batch 64,
each only where the user left the key alone; 16 px (the digits) keeps the measured defaults."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from gandist.config import load_config
from gandist.data import write_shards
from gandist.data.builtin import DIGITS_SIZE
from gandist.data.patches import PATCH_SETS
from gandist.size_defaults import BUILTIN_SIDES, resolve_size_defaults


def resolved(overrides: list[str], side: int) -> tuple[object, str]:
    cfg = load_config(None, overrides)
    note = resolve_size_defaults(cfg, {o.split("=", 1)[0] for o in overrides}, lambda: side)
    return cfg, note


@pytest.mark.parametrize("side", [28, 32, 64])
def test_from_28_px_up_the_defaults_follow_the_measurements(side):
    cfg, note = resolved([], side)
    assert cfg.model.spectral_norm_d == "on" and cfg.train.batch_size == 64
    assert f"notice: {side} px images" in note and "model.spectral_norm_d=on" in note and "train.batch_size=64" in note
    cfg.validate()


def test_the_digits_keep_their_measured_defaults():
    cfg, note = resolved([], 16)
    assert note == "" and cfg.model.spectral_norm_d == "auto" and cfg.train.batch_size == 32


def test_what_the_user_set_stays_even_at_its_default_value():
    cfg, note = resolved(["train.batch_size=32"], 32)
    assert cfg.train.batch_size == 32 and cfg.model.spectral_norm_d == "on"
    assert "train.batch_size" not in note
    cfg, note = resolved(["train.batch_size=32", "model.spectral_norm_d=auto"], 32)
    assert note == "" and cfg.train.batch_size == 32 and cfg.model.spectral_norm_d == "auto"


@pytest.mark.parametrize("overrides", [["model.name=resnet"], ["model.conditional=false"], ["train.objective=semisup", "model.conditional=false"]])
def test_unmeasured_models_and_objectives_are_left_alone(overrides):
    cfg, note = resolved(overrides, 32)
    assert note == "" and cfg.train.batch_size == 32 and cfg.model.spectral_norm_d == "auto"


def test_the_size_the_models_are_built_for_decides():
    # data.image_size resizes the data: a 64 px set trained at 16 px keeps the 16 px defaults,
    # and the data's own size is not even read.
    def unread() -> int:
        raise AssertionError("read the data although data.image_size is set")

    cfg = load_config(None, ["data.image_size=16"])
    assert resolve_size_defaults(cfg, {"data.image_size"}, unread) == ""
    cfg = load_config(None, ["data.image_size=32"])
    assert "train.batch_size=64" in resolve_size_defaults(cfg, {"data.image_size"}, unread)


def test_the_builtin_sides_are_those_of_the_sets():
    assert BUILTIN_SIDES == {"digits": DIGITS_SIZE, **{name: s.patch_size for name, s in PATCH_SETS.items()}}


def test_a_dry_run_prints_the_rule_and_the_resolved_config(tmp_path):
    shards = tmp_path / "shards"
    rng = np.random.default_rng(0)
    write_shards([(f"{i:04d}", rng.integers(0, 255, (32, 32, 3), np.uint8), i % 2) for i in range(8)], shards,
                 class_names=["a", "b"], shard_size=8)
    result = subprocess.run([sys.executable, "-m", "gandist", "train", "--dry-run", "--run-dir", str(tmp_path / "r"),
                             f"data.path={shards}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "notice: 32 px images: set model.spectral_norm_d=on train.batch_size=64" in result.stdout
    assert "spectral_norm_d: 'on'" in result.stdout and "batch_size: 64" in result.stdout
    # The built-in digits: nothing changes, and the set is not built for a dry run.
    result = subprocess.run([sys.executable, "-m", "gandist", "train", "--dry-run", "--run-dir", str(tmp_path / "d")],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "GANDIST_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert "notice: " not in result.stdout and "batch_size: 32" in result.stdout
    assert not (tmp_path / "cache").exists()


def test_a_dry_run_checks_a_command_line_before_its_data_exists(tmp_path):
    missing = tmp_path / "not-made-yet"
    cmd = [sys.executable, "-m", "gandist", "train", "--run-dir", str(tmp_path / "r"), f"data.path={missing}"]
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert f"note: the data cannot be read yet (data.path: directory not found: {missing})" in dry.stdout
    real = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert real.returncode == 2 and f"data.path: directory not found: {missing}" in real.stderr
    assert not (tmp_path / "r").exists()  # stopped before the run directory was made
