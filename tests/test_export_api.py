"""`gandist export` as a folder (model.safetensors, config.json, README.md model card), read back
by `load_generator` and by `safetensors` alone; the older single-file form still reads; the
README's Python example runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import REPO_ROOT
from gandist import load_generator
from gandist.checkpoint import load_tensor_file, resolve_checkpoint

pytestmark = pytest.mark.slow

TINY = ["train.steps=2", "model.g_width=8", "model.d_width=8", "train.batch_size=16", "log.progress=false",
        "log.sample_every_steps=0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, gandist_cache):
    from conftest import run_gandist

    root = tmp_path_factory.mktemp("export")
    run_dir = root / "runs" / "digits"
    p = run_gandist("train", "--run-dir", str(run_dir), *TINY, env={"GANDIST_CACHE": str(gandist_cache)})
    assert p.returncode == 0, p.stderr
    # What `gandist eval` and `gandist classify` write (their own tests make them for real).
    (run_dir / "eval.json").write_text(json.dumps({
        "step": 2, "extractor": "classifier-resnet8-0123456789ab", "num_generated": 100, "num_real": 1438,
        "metrics": {"fid": 123.4, "kid": 0.5, "precision": 0.1, "recall": 0.0}}))
    report = root / "reports" / "digits"
    report.mkdir(parents=True)
    (report / "classify_report.json").write_text(json.dumps({
        "real": {"real": {"accuracy_mean": 0.995, "accuracy_std": 0.001}},
        "cas": {"synthetic": {"accuracy_mean": 0.783, "accuracy_std": 0.016}}, "meta": {"arch": "resnet8"}}))
    return root, run_dir, report


def ema_weights(run_dir: Path) -> dict:
    return load_tensor_file(resolve_checkpoint(run_dir, log=lambda s: None) / "model.pt")["G_ema"]


def test_export_folder_reads_back_everywhere(trained, run):
    root, run_dir, report = trained
    out = root / "exports" / "digits"
    p = run("export", "--run-dir", run_dir, "--out", out, "--classify-report", report)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]

    # safetensors alone: the EMA weights, and the model config in the metadata.
    ema = ema_weights(run_dir)
    weights = load_file(str(out / "model.safetensors"))
    assert weights.keys() == ema.keys() and all(torch.equal(weights[k], ema[k]) for k in ema)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["gandist"])
    config = json.loads((out / "config.json").read_text())
    assert meta == config
    assert config["step"] == 2 and config["num_classes"] == 10 and config["dataset"] == "builtin:digits"
    assert config["metrics"]["eval"]["fid"] == 123.4 and config["metrics"]["cas"]["accuracy_mean"] == 0.783

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: gandist\n")
    for fact in ("| data set | `builtin:digits` |", "| steps trained | 2 of 2 |", f"| image size | {config['image_size']} x",
                 "| classes | 10: 0, 1, 2", "FID 123.4", "features: `classifier-resnet8-0123456789ab`", "CAS", "78.3 ± 1.6 %", "99.5 %"):
        assert fact in card, fact

    # load_generator: the export and the run give the same images.
    from_export, from_run = load_generator(out), load_generator(run_dir)
    assert isinstance(from_export, torch.nn.Module)
    assert torch.equal(from_export.sample(10, seed=1), from_run.sample(10, seed=1))


def test_older_single_file_export_still_reads(trained, run, tmp_path):
    _, run_dir, _ = trained
    out = tmp_path / "g.safetensors"
    assert run("export", "--run-dir", run_dir, "--out", out).returncode == 0
    assert out.with_suffix(".json").is_file()
    assert torch.equal(load_generator(out).sample(4, seed=0), load_generator(run_dir).sample(4, seed=0))


def test_sample_arguments(trained):
    _, run_dir, _ = trained
    g = load_generator(run_dir)
    images = g.sample(12, labels=3, truncation=0.5, seed=0)
    assert images.dtype == torch.uint8 and images.shape[0] == 12 and images.shape[1] == g.spec.channels
    assert torch.equal(images, g.sample(12, labels=[3] * 12, truncation=0.5, seed=0))
    assert not torch.equal(images, g.sample(12, labels=3, seed=0))  # truncation changes the noise
    with pytest.raises(ValueError, match=r"labels: class indices must be in 0..9"):
        g.sample(2, labels=[0, 10])
    with pytest.raises(ValueError, match=r"labels: expected one class index or 3 of them"):
        g.sample(3, labels=[1, 2])


def python_example(page):
    """The first python block under a page's "## Python API" heading."""
    section = re.split(r"^## Python API\n", page.read_text(), maxsplit=1, flags=re.M)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_readme_python_example_runs(trained, monkeypatch):
    root, _, _ = trained
    example = python_example(REPO_ROOT / "README.md")
    assert 'load_generator("runs/digits")' in example
    # the docs page carries the same example, so what runs here is what both show
    assert python_example(REPO_ROOT / "docs" / "training.md") == example
    monkeypatch.chdir(root)  # where runs/digits is
    exec(compile(example, "README.md", "exec"), {})
    assert (root / "seven.png").stat().st_size > 50


def test_export_refuses_a_non_safetensors_file(tmp_path, run):
    p = run("export", "--run-dir", tmp_path, "--out", tmp_path / "g.pt")
    assert p.returncode == 2 and "must end in .safetensors" in p.stderr
