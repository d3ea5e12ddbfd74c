"""The verbs end to end from the CLI on a tiny run: train -> synth -> eval -> classify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def gandist(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-m", "gandist", *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"gandist {' '.join(map(str, args))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.mark.slow
def test_train_synth_eval_classify(tmp_path):
    gandist("shards", "make", "--builtin", "digits", "--split", "train", "--out", tmp_path / "train")
    gandist("shards", "make", "--builtin", "digits", "--split", "test", "--out", tmp_path / "test")
    run = tmp_path / "run"
    gandist("train", "--run-dir", run, f"data.path={tmp_path / 'train'}", "train.steps=2", "train.batch_size=16",
            "model.g_width=8", "model.d_width=8", "log.progress=false", "log.sample_every_steps=0")

    out = gandist("synth", "--run-dir", run, "--per-class", 12, "--out", tmp_path / "synth", "--truncation", 0.7)
    manifest = json.loads((tmp_path / "synth" / "manifest.json").read_text())
    assert "wrote 120 synthetic images" in out.stdout
    assert manifest["synthetic"] is True and manifest["truncation"] == 0.7 and manifest["generator_step"] == 2
    assert manifest["class_counts"] == [12] * 10
    again = gandist("synth", "--run-dir", run, "--per-class", 12, "--out", tmp_path / "synth", check=False)
    assert again.returncode == 2 and "already holds a dataset" in again.stderr

    ev = gandist("eval", "--run-dir", run, "--num-samples", 100, f"metrics.cache_dir={tmp_path / 'cache'}",
                 "metrics.kid_subset_size=50", "metrics.kid_num_subsets=3", "metrics.classifier_steps=20", "log.progress=false")
    result = json.loads((run / "eval.json").read_text())
    assert result["extractor"].startswith("classifier-resnet8-") and result["num_generated"] == 100 and result["num_real"] > 1000
    assert result["metrics"]["fid"] > 0 and 0 <= result["metrics"]["class_accuracy"] <= 1
    assert result["extractor"] in ev.stdout

    report_dir = tmp_path / "report"
    gandist("classify", "--train", tmp_path / "train", "--test", tmp_path / "test", "--synthetic", tmp_path / "synth",
            "--protocol", "real,cas,lowdata", "--seeds", 1, "--steps", 15, "--real-fraction", "0.1,1", "--out", report_dir)
    report = json.loads((report_dir / "classify_report.json").read_text())
    assert set(report) == {"real", "cas", "lowdata", "meta"}
    assert report["cas"]["synthetic"]["num_train"] == 120
    assert report["meta"]["command"].startswith("gandist classify --train")
    for name in ("classify_report.md", "classify_report.png", "domain_classifier.safetensors"):
        assert (report_dir / name).is_file(), name
    assert list((report_dir / "tb").glob("events.out.tfevents.*"))

    # The domain classifier is wired into synth's filter, with a threshold that rejects some.
    # The threshold comes from the confidences of synth's first round (recomputed here): every
    # class keeps its 2 images in that round, and the images below it are rejected.
    threshold, expected_accepted = _threshold_rejecting_some(run, report_dir / "domain_classifier.safetensors", per_class=2)
    filt = gandist("synth", "--run-dir", run, "--per-class", 2, "--out", tmp_path / "s2", "--filter-classifier",
                   report_dir / "domain_classifier.safetensors", "--min-confidence", repr(threshold))
    assert "filter kept" in filt.stdout
    filtered = json.loads((tmp_path / "s2" / "manifest.json").read_text())
    assert filtered["class_counts"] == [2] * 10
    stats = filtered["filter_stats"]
    assert (stats["generated"], stats["accepted"]) == (160, expected_accepted), stats  # all from the first round
    assert expected_accepted < 160  # some were rejected
    assert filtered["min_confidence"] == threshold and filtered["min_confidence_tuning"] is None

    # --min-confidence auto: each threshold of the grid scored on the validation split, the best chosen.
    gandist("shards", "make", "--builtin", "digits", "--split", "val", "--out", tmp_path / "val")
    clf = report_dir / "domain_classifier.safetensors"
    auto = gandist("synth", "--run-dir", run, "--per-class", 2, "--out", tmp_path / "s3", "--filter-classifier", clf,
                   "--min-confidence", "auto", "--val", tmp_path / "val", "--tune-steps", 5)
    tuned = json.loads((tmp_path / "s3" / "manifest.json").read_text())
    tuning = tuned["min_confidence_tuning"]
    assert tuning["thresholds"] == [0.0, 0.5, 0.7, 0.9, 0.95] and tuning["val"] == str(tmp_path / "val") and tuning["num_val"] == 179
    scores = {c["min_confidence"]: c["val_accuracy"] for c in tuning["candidates"] if c["val_accuracy"] is not None}
    assert 0.0 in scores and all(0 <= v <= 1 for v in scores.values())
    assert tuned["min_confidence"] == tuning["chosen"] == min(t for t, v in scores.items() if v == max(scores.values()))
    assert tuned["class_counts"] == [2] * 10
    assert f"--min-confidence auto chose {tuning['chosen']:g} on the validation split" in auto.stdout
    for bad, message in ((["--min-confidence", "auto"], "needs --val"), (["--val", tmp_path / "val"], "add --min-confidence auto"),
                         (["--min-confidence", "high"], "expected a number in [0, 1] or auto")):
        p = gandist("synth", "--run-dir", run, "--per-class", 2, "--out", tmp_path / "s4", "--filter-classifier", clf, *bad, check=False)
        assert p.returncode == 2 and message in p.stderr, p.stderr

def test_bad_input_exit_codes(tmp_path):
    p = gandist("classify", "--train", tmp_path / "nope", "--test", tmp_path / "nope", "--protocol", "cas", "--out", tmp_path / "r", check=False)
    assert p.returncode == 2 and "--protocol cas needs labelled synthetic data" in p.stderr
    p = gandist("synth", "--run-dir", tmp_path / "missing", "--per-class", 3, "--out", tmp_path / "s", check=False)
    assert p.returncode == 2 and "missing" in p.stderr
    p = gandist("eval", "--run-dir", tmp_path, check=False)
    assert p.returncode == 2 and "no config.yaml" in p.stderr


def _threshold_rejecting_some(run: Path, classifier_path: Path, per_class: int) -> tuple[float, int]:
    """(threshold, images it accepts) for synth's first round: the lowest confidence at which
    every class still has ``per_class`` images."""
    import numpy as np

    from gandist.classification.synthetic import SynthOptions, _class_confidence, _generate_round
    from gandist.classification.training import load_classifier
    from gandist.engine.process_group import ProcessGroup
    from gandist.generators import load_generator

    G, info = load_generator(run, ema=True, log=lambda s: None)
    clf, clf_info = load_classifier(classifier_path)
    n = 10 * max(2 * per_class, 16)  # synth's first-round size (classification/synthetic.py)
    images, labels, _ = _generate_round(G, 10, info["spec"].z_dim, SynthOptions(per_class=per_class), ProcessGroup(), n, 0)
    conf = np.asarray(_class_confidence(clf, images, labels, clf_info["image_size"], "cpu"))
    threshold = float(min(np.sort(conf[labels == c])[-per_class] for c in range(10)))
    return threshold, int((conf >= threshold).sum())
