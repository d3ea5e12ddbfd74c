"""End-to-end training through the CLI: outputs, exact resume, refusals, damaged checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

TINY = [
    "model.g_width=8", "model.d_width=8", "model.z_dim=8", "train.batch_size=16",
    "log.every_steps=2", "log.sample_every_steps=3", "log.num_grid_images=20",
    "checkpoint.every_steps=3", "log.progress=false",
]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_states_equal(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"tensors differ at {where}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_states_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_states_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_short_run_writes_every_output(run, tmp_path):
    d = tmp_path / "run"
    res = run("train", "--run-dir", d, "train.steps=6", *TINY)
    assert res.returncode == 0, res.stderr
    assert "resolved config:" in res.stdout and "world size 1" in res.stdout

    assert yaml.safe_load((d / "config.yaml").read_text())["train"]["steps"] == 6
    assert (d / "ckpt" / "latest").read_text().strip() == "step_00000006"
    assert sorted(p.name for p in (d / "ckpt").iterdir()) == ["latest", "step_00000003", "step_00000006"]
    ckpt = d / "ckpt" / "step_00000006"
    model = load(ckpt / "model.pt")  # weights_only: tensors and plain data only
    assert set(model) == {"G", "D", "G_ema"}
    # The EMA's BatchNorm statistics were estimated for its own weights, not copied from G.
    stats = [k for k in model["G"] if k.endswith("running_mean")]
    assert stats and all(not torch.equal(model["G"][k], model["G_ema"][k]) for k in stats)
    assert load(ckpt / "trainer.pt")["step"] == 6
    assert set(load(ckpt / "optim.pt")) == {"opt_G", "opt_D", "scaler"}
    assert json.loads((ckpt / "MANIFEST.json").read_text())["files"]["model.pt"]["bytes"] == (ckpt / "model.pt").stat().st_size

    grid = Image.open(d / "samples" / "step_00000006.png")
    assert grid.size[0] >= 16 * 2 and np.asarray(grid).std() > 0  # not a blank image
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4, 6]
    assert all(0 < x["D/real"] < 1 and 0 < x["D/fake"] < 1 and x["perf/images_per_sec"] > 0 for x in lines)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(d / "tb")).Reload()
    tags = events.Tags()
    for tag in ("loss/D", "loss/G", "D/real", "D/fake", "lr/G", "perf/images_per_sec"):
        assert tag in tags["scalars"]
    assert [e.step for e in events.Scalars("loss/D")] == [2, 4, 6]
    assert "samples/ema" in tags["images"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_resume_equals_uninterrupted_run_bitwise(run, tmp_path, workers):
    # With 2 loader workers the batches come from worker processes through shared slots.
    args = [*TINY, f"data.num_workers={workers}"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run("train", "--run-dir", straight, "train.steps=6", *args).returncode == 0
    first = run("train", "--run-dir", resumed, "train.steps=3", *args)
    assert first.returncode == 0, first.stderr
    # The same command with a larger budget continues the run and says so.
    second = run("train", "--run-dir", resumed, "train.steps=6", *args)
    assert second.returncode == 0, second.stderr
    assert "resuming from" in second.stdout and "at step 3" in second.stdout
    for name in ("model.pt", "optim.pt"):
        a = load(straight / "ckpt" / "step_00000006" / name)
        b = load(resumed / "ckpt" / "step_00000006" / name)
        assert_states_equal(a, b, name)
    # Logged values continue without duplicated or backward steps (3 was the first run's last step).
    assert [json.loads(x)["step"] for x in (resumed / "metrics.jsonl").read_text().splitlines()] == [2, 3, 4, 6]


@pytest.mark.slow
def test_resume_with_other_loader_workers_continues_the_epoch(run, tmp_path):
    # Same ranks, another data.num_workers: the saved position cannot be loaded batch for batch,
    # so the stream continues the epoch over the samples not read yet (gandist.data.epoch_legs).
    d = tmp_path / "run"
    assert run("train", "--run-dir", d, "train.steps=3", *TINY, "data.num_workers=0").returncode == 0
    res = run("train", "--run-dir", d, "train.steps=5", *TINY, "data.num_workers=2", "--allow-config-change")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "the data stream continues in epoch" in res.stdout and "0 loader workers" in res.stdout
    trainer = load(d / "ckpt" / "step_00000005" / "trainer.pt")
    assert trainer["data"]["num_workers"] == 2 and trainer["step"] == 5


@pytest.mark.slow
def test_config_change_refused_unless_allowed(run, tmp_path):
    d = tmp_path / "run"
    assert run("train", "--run-dir", d, "train.steps=3", *TINY).returncode == 0
    res = run("train", "--run-dir", d, "train.steps=4", "optim.lr_d=1e-3", *TINY)
    assert res.returncode == 2
    assert "optim.lr_d" in res.stderr and "train.steps" not in res.stderr.split("changed keys:")[1].split(".")[0]
    res = run("train", "--run-dir", d, "train.steps=4", "optim.lr_d=1e-3", "--allow-config-change", *TINY)
    assert res.returncode == 0, res.stderr
    assert (d / "ckpt" / "latest").read_text().strip() == "step_00000004"


@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_then_refuses(run, tmp_path):
    d = tmp_path / "run"
    assert run("train", "--run-dir", d, "train.steps=6", *TINY).returncode == 0
    newest = d / "ckpt" / "step_00000006" / "model.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    res = run("train", "--run-dir", d, "train.steps=7", *TINY)
    assert res.returncode == 0, res.stderr
    assert "skipping damaged checkpoint" in res.stdout and "step_00000006" in res.stdout
    assert "resuming from" in res.stdout and "at step 3" in res.stdout

    for ckpt in (d / "ckpt").glob("step_*"):
        (ckpt / "model.pt").write_bytes(b"garbage")
    res = run("train", "--run-dir", d, "train.steps=8", *TINY)
    assert res.returncode == 2
    assert "no usable checkpoint" in res.stderr and "model.pt" in res.stderr


@pytest.mark.slow
def test_sample_verb(run, tmp_path):
    d = tmp_path / "run"
    assert run("train", "--run-dir", d, "train.steps=3", *TINY).returncode == 0
    out = tmp_path / "grid.png"
    res = run("sample", "--run-dir", d, "--n", "20", "--out", out, "--class", "3")
    assert res.returncode == 0, res.stderr
    assert Image.open(out).size[0] > 16
    # The grid is the generator's output for class 3 (not the width alone: another class fails).
    import torch

    from gandist.generators import load_generator
    from gandist.grid import save_grid

    g, info = load_generator(d, ema=True)
    z = torch.randn(20, info["spec"].z_dim, generator=torch.Generator().manual_seed(0))
    pixels = {}
    for c in (3, 4):
        with torch.no_grad():
            save_grid(g(z, torch.full((20,), c, dtype=torch.long)), tmp_path / f"class{c}.png")
        pixels[c] = np.asarray(Image.open(tmp_path / f"class{c}.png"))
    sampled = np.asarray(Image.open(out))
    assert np.array_equal(sampled, pixels[3])
    assert not np.array_equal(sampled, pixels[4])
    res = run("sample", "--run-dir", d, "--n", "4", "--out", out, "--class", "10")
    assert res.returncode == 2 and "--class" in res.stderr
    res = run("sample", "--run-dir", tmp_path / "nothing", "--n", "4", "--out", out)
    assert res.returncode == 2 and "nothing" in res.stderr


def test_missing_data_path_is_bad_input(run, tmp_path):
    res = run("train", "--run-dir", tmp_path / "r", f"data.path={tmp_path / 'nowhere'}", *TINY)
    assert res.returncode == 2
    assert "nowhere" in res.stderr


def test_dry_run_and_bad_key_exit_codes(run, tmp_path):
    res = run("train", "--dry-run", "train.steps=5")
    assert res.returncode == 0 and "steps: 5" in res.stdout
    res = run("train", "no.such.key=1")
    assert res.returncode == 2 and "no.such.key" in res.stderr
    res = run("train", "train.batch_size=63", env={"WORLD_SIZE": "2"})
    assert res.returncode == 2 and "world size 2" in res.stderr


def test_non_finite_loss_stops_and_keeps_last_checkpoint(gandist_cache, tmp_path):
    """A NaN in D's weights (as a diverged run has) stops training naming the step."""
    from gandist.config import load_config
    from gandist.engine import build_engine
    from gandist.errors import TrainingDiverged
    from gandist.train import save_checkpoint, setup, train_loop

    cfg = load_config(None, ["train.steps=5", *TINY]).validate()
    engine = build_engine(cfg, tmp_path)
    run = setup(cfg, tmp_path, engine)
    try:
        save_checkpoint(run)
        with torch.no_grad():
            next(run.engine.unwrap("D").parameters()).fill_(float("nan"))
        with pytest.raises(TrainingDiverged, match="non-finite loss at step 1"):
            train_loop(run)
    finally:
        run.logger.close()
        run.state.stream.close()
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "step_00000000"
    assert not (tmp_path / "ckpt" / "step_00000001").exists()


@pytest.mark.slow
def test_dcgan_trains_with_spectral_norm_d_and_resumes(run, tmp_path):
    """`model.spectral_norm_d=true` on the default dcgan: D is saved with its spectral-norm
    parametrisation (weights and power-iteration vectors), and a resume loads it back."""
    d = tmp_path / "run"
    args = ["model.spectral_norm_d=true", *TINY]
    res = run("train", "--run-dir", d, "train.steps=3", *args)
    assert res.returncode == 0, res.stderr
    res = run("train", "--run-dir", d, "train.steps=4", *args)
    assert res.returncode == 0, res.stderr
    state_d = load(d / "ckpt" / "step_00000004" / "model.pt")["D"]
    assert any(k.endswith("parametrizations.weight.original") for k in state_d)
    assert any(k.endswith("parametrizations.weight.0._u") for k in state_d)
    assert not any("running_mean" in k for k in state_d), "spectral-norm D has no BatchNorm"
    line = json.loads((d / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 < line["D/real"] < 1 and np.isfinite(line["loss/D"])
