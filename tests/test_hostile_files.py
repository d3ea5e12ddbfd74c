"""The hostile-file corpus: every command that reads a checkpoint, an exported generator or a
classifier is run against code-running pickles (manifest re-signed), damaged safetensors and
damaged checkpoint manifests. Each ends with exit 2 and a message naming the file, or with the
documented fallback to the previous checkpoint; no code from a file ever runs; no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from faults_helpers import REPO, TINY, env
from hostile import checkpoint_files, damaged_safetensors, plant_pickle, resign_manifest
from gandist.cli import main

STEP4 = "step_00000004"


def _train(run_dir: Path, steps: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gandist", "train", "--run-dir", str(run_dir), *TINY,
                           "model.name=dcgan", "checkpoint.every_steps=2", f"train.steps={steps}"],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, gandist_cache):
    """A DDP run with checkpoints at steps 2 and 4, its exported generator, and a domain classifier."""
    base = tmp_path_factory.mktemp("hostile")
    run_dir = base / "run"
    proc = _train(run_dir, 4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(["export", "--run-dir", str(run_dir), "--out", str(base / "g.safetensors")]) == 0
    from gandist.classification.classifiers import build_classifier
    from gandist.classification.training import save_classifier

    info = json.loads((run_dir / "ckpt" / STEP4 / "model.json").read_text())
    spec = info["spec"]
    clf = build_classifier("resnet8", spec["channels"], spec["num_classes"], spec["image_size"])
    save_classifier(clf, base / "clf.safetensors", arch="resnet8", channels=spec["channels"], image_size=spec["image_size"],
                    class_names=info["class_names"], train_source="test", test_accuracy=0.0)
    return base


def _cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


# Code-running pickles ------------------------------------------------------------------------


@pytest.mark.parametrize("victim", ["model.pt", "optim.pt", "trainer.pt", "rank/00000.pt"])
def test_planted_pickle_never_runs_on_resume(corpus, tmp_path, victim):
    run_dir = tmp_path / "run"
    shutil.copytree(corpus / "run", run_dir)
    ckpt = run_dir / "ckpt" / STEP4
    marker = tmp_path / "code_ran"
    plant_pickle(ckpt / victim, marker)
    resign_manifest(ckpt)
    proc = _train(run_dir, 6)
    out = proc.stdout + proc.stderr
    assert not marker.exists(), "code from a planted pickle ran"
    assert proc.returncode == 2, out[-3000:]
    assert f"cannot load checkpoint file {ckpt / victim}" in out and "Traceback" not in out, out[-3000:]


@pytest.mark.parametrize("verb", ["sample", "export", "synth", "eval"])
def test_planted_pickle_never_runs_in_commands_that_read_generators(corpus, tmp_path, capsys, verb):
    run_dir = tmp_path / "run"
    shutil.copytree(corpus / "run", run_dir)
    marker = tmp_path / "code_ran"
    for ckpt in (run_dir / "ckpt").glob("step_*"):
        for path in checkpoint_files(ckpt):
            plant_pickle(path, marker)
        resign_manifest(ckpt)
    args = {
        "sample": ["sample", "--run-dir", run_dir, "--n", 4, "--out", tmp_path / "g.png"],
        "export": ["export", "--run-dir", run_dir, "--out", tmp_path / "g.safetensors"],
        "synth": ["synth", "--run-dir", run_dir, "--per-class", 1, "--out", tmp_path / "synth"],
        "eval": ["eval", "--run-dir", run_dir, "--num-samples", 10],
    }[verb]
    code, out = _cli(capsys, *args)
    assert not marker.exists(), "code from a planted pickle ran"
    assert code == 2, out[-3000:]
    assert "model.pt" in out and "Traceback" not in out


# Damaged safetensors ---------------------------------------------------------------------------


def _damaged(corpus: Path, tmp_path: Path, source: str) -> dict[str, Path]:
    out = tmp_path / "damaged"
    out.mkdir()
    return damaged_safetensors(corpus / source, out)


@pytest.mark.parametrize("verb", ["sample", "synth"])
def test_damaged_generator_file_exits_2_naming_it(corpus, tmp_path, capsys, verb):
    for kind, path in _damaged(corpus, tmp_path, "g.safetensors").items():
        path.with_suffix(".json").unlink(missing_ok=True)
        if verb == "sample":
            args = ["sample", "--generator", path, "--n", 4, "--out", tmp_path / "g.png"]
        else:
            args = ["synth", "--run-dir", path, "--per-class", 1, "--out", tmp_path / f"synth_{kind}"]
        code, out = _cli(capsys, *args)
        assert code == 2, f"{kind}: {out[-2000:]}"
        assert str(path) in out and "Traceback" not in out, f"{kind}: {out[-2000:]}"


def test_damaged_classifier_exits_2_in_synth_and_eval(corpus, tmp_path, capsys):
    for kind, path in _damaged(corpus, tmp_path, "clf.safetensors").items():
        code, out = _cli(capsys, "synth", "--run-dir", corpus / "run", "--per-class", 1, "--out", tmp_path / f"s_{kind}",
                         "--filter-classifier", path)
        assert code == 2 and str(path) in out and "Traceback" not in out, f"synth {kind}: {out[-2000:]}"
        code, out = _cli(capsys, "eval", "--run-dir", corpus / "run", "--num-samples", 10, "--out", tmp_path / "e.json",
                         f"metrics.classifier={path}", "metrics.kid_subset_size=5")
        assert code == 2 and str(path) in out and "Traceback" not in out, f"eval {kind}: {out[-2000:]}"


# Damaged checkpoint manifests: fall back to the previous checkpoint -----------------------------


def _manifest_list(ckpt: Path) -> None:
    (ckpt / "MANIFEST.json").write_text(json.dumps([1, 2, 3]))


def _entry_without_bytes(ckpt: Path) -> None:
    m = json.loads((ckpt / "MANIFEST.json").read_text())
    del m["files"]["model.pt"]["bytes"]
    (ckpt / "MANIFEST.json").write_text(json.dumps(m))


def _path_outside(ckpt: Path) -> None:
    m = json.loads((ckpt / "MANIFEST.json").read_text())
    m["files"]["../../../../etc/hostname"] = {"bytes": 1, "sha256": "0" * 64}
    (ckpt / "MANIFEST.json").write_text(json.dumps(m))


def _binary_manifest(ckpt: Path) -> None:
    (ckpt / "MANIFEST.json").write_bytes(bytes(range(256)))


def _model_json_unknown_key(ckpt: Path) -> None:
    info = json.loads((ckpt / "model.json").read_text())
    info["exec"] = "import os"
    (ckpt / "model.json").write_text(json.dumps(info))
    resign_manifest(ckpt)


def _model_json_bad_spec(ckpt: Path) -> None:
    info = json.loads((ckpt / "model.json").read_text())
    info["spec"]["z_dim"] = "8; rm -rf /"
    (ckpt / "model.json").write_text(json.dumps(info))
    resign_manifest(ckpt)


DAMAGES = [_manifest_list, _entry_without_bytes, _path_outside, _binary_manifest, _model_json_unknown_key, _model_json_bad_spec]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.strip("_"))
def test_damaged_checkpoint_manifest_falls_back_to_previous(corpus, tmp_path, capsys, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(corpus / "run", run_dir)
    damage(run_dir / "ckpt" / STEP4)
    code, out = _cli(capsys, "sample", "--run-dir", run_dir, "--n", 4, "--out", tmp_path / "g.png")
    assert code == 0, out[-2000:]
    assert f"skipping damaged checkpoint {run_dir / 'ckpt' / STEP4}" in out and "step_00000002" in out, out[-2000:]


def test_damaged_manifest_falls_back_on_resume(corpus, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(corpus / "run", run_dir)
    _model_json_unknown_key(run_dir / "ckpt" / STEP4)
    proc = _train(run_dir, 6)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "skipping damaged checkpoint" in out and "unknown keys ['exec']" in out
    assert "resuming from" in out and "step_00000002" in out
    assert torch.load(run_dir / "ckpt" / "step_00000006" / "trainer.pt", weights_only=True)["step"] == 6


def test_damaged_export_folder_exits_2_naming_the_file(corpus, tmp_path, capsys):
    folder = tmp_path / "export"
    assert main(["export", "--run-dir", str(corpus / "run"), "--out", str(folder)]) == 0
    capsys.readouterr()
    code, out = _cli(capsys, "sample", "--generator", folder, "--n", 4, "--out", tmp_path / "ok.png")
    assert code == 0, out
    good = (folder / "model.safetensors").read_bytes()
    for kind, path in _damaged(corpus, tmp_path, "g.safetensors").items():
        (folder / "model.safetensors").write_bytes(path.read_bytes())
        code, out = _cli(capsys, "sample", "--generator", folder, "--n", 4, "--out", tmp_path / "g.png")
        if kind in ("no_gandist_metadata", "bad_gandist_metadata"):
            assert code == 0, f"{kind}: {out}"  # the folder's config.json describes the model
            continue
        assert code == 2 and str(folder / "model.safetensors") in out and "Traceback" not in out, f"{kind}: {out}"
    (folder / "model.safetensors").write_bytes(good)
    (folder / "config.json").write_text('{"model_name": "dcgan", "spec": {"z_dim": "eight"}}')
    code, out = _cli(capsys, "sample", "--generator", folder, "--n", 4, "--out", tmp_path / "g.png")
    assert code == 2 and "config.json" in out and "Traceback" not in out, out
