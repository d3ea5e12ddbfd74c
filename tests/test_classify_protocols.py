"""Classifier training and the real / cas / mix / lowdata protocols on the digits, tiny budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gandist.classification.classifiers import available_classifiers, build_classifier
from gandist.classification.protocols import ProtocolPlan, carve_validation, run_protocols, stratified_subset
from gandist.classification.report import write_report
from gandist.classification.training import (
    SELECTION_CHECKS,
    ClassifierSettings,
    LabelledImages,
    Selection,
    accuracy,
    load_classifier,
    save_classifier,
    train_classifier,
)
from gandist.data import digits_arrays
from gandist.errors import BadInputError

FAST = ClassifierSettings(steps=60, batch_size=32)


@pytest.fixture(scope="module")
def digits():
    # Every other pixel: the digits at their native 8x8, 4x cheaper to train on than 16x16.
    x_tr, y_tr = digits_arrays("train")
    x_te, y_te = digits_arrays("test")
    names = [str(i) for i in range(10)]
    return LabelledImages(x_tr[:, None, ::2, ::2], y_tr, names, "train"), LabelledImages(x_te[:, None, ::2, ::2], y_te, names, "test")


def test_classifiers_fit_any_size_and_channels():
    import torch

    for name in available_classifiers():
        for size, ch in [(8, 1), (16, 1), (32, 3), (64, 3)]:
            m = build_classifier(name, ch, 7, size)
            assert m(torch.zeros(2, ch, size, size)).shape == (2, 7)
            assert m.features(torch.zeros(2, ch, size, size)).shape == (2, m.num_features)
    with pytest.raises(ValueError, match="unknown classifier 'vgg'"):
        build_classifier("vgg", 1, 10, 16)


def test_real_training_learns_digits_and_is_reproducible(digits, tmp_path):
    train, test = digits
    a = train_classifier(train, 10, FAST, seed=0)
    acc = accuracy(a, test)
    assert acc > 0.85, acc  # chance is 0.1
    b = train_classifier(train, 10, FAST, seed=0)
    assert accuracy(b, test) == acc
    path = tmp_path / "clf.safetensors"
    save_classifier(a, path, arch="resnet8", channels=1, image_size=8, class_names=train.class_names, train_source="train", test_accuracy=acc)
    loaded, info = load_classifier(path)
    assert accuracy(loaded, test) == acc
    assert info["class_names"] == train.class_names and info["image_size"] == 8 and info["test_accuracy"] == pytest.approx(acc)


def test_stratified_subset_keeps_every_class():
    labels = np.repeat(np.arange(10), [100, 50, 20, 10, 5, 3, 2, 1, 1, 1])
    idx = stratified_subset(labels, 0.1, np.random.default_rng(0))
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.tolist() == [10, 5, 2, 1, 1, 1, 1, 1, 1, 1]
    assert len(set(idx.tolist())) == len(idx)


@pytest.mark.slow
def test_protocols_report_and_real_beats_wrongly_labelled_synthetic(digits, tmp_path):
    train, test = digits
    # Stand-in "synthetic" sets made of real images: one correctly labelled, one with labels
    # rotated by one class. CAS must be high for the first and near zero for the second.
    good = LabelledImages(test.images, test.labels, train.class_names, "good")
    bad = LabelledImages(test.images, (test.labels + 1) % 10, train.class_names, "bad")
    plan = ProtocolPlan(["real", "cas", "mix", "lowdata"], seeds=2, real_fractions=[0.1], synthetic_ratios=[0.0, 0.2])
    report, domain = run_protocols(train, test, good, plan, FAST, num_classes=10, log=lambda s: None)
    assert set(report) == {"real", "cas", "mix", "lowdata"}
    assert set(report["lowdata"]) == {f"fraction=0.1/{v}" for v in ("real", "real+classical_aug", "real+synthetic")}
    for settings in report.values():
        for r in settings.values():
            assert len(r["accuracies"]) == 2
            assert r["accuracy_mean"] == pytest.approx(np.mean(r["accuracies"]))
            assert r["accuracy_std"] == pytest.approx(np.std(r["accuracies"]))
    assert report["real"]["real"]["accuracy_mean"] > 0.85
    assert report["cas"]["synthetic"]["accuracy_mean"] > 0.6  # trained on the test images themselves
    assert report["mix"]["ratio=0.2"]["num_train"] == len(train) + round(0.2 * len(train))
    # Same data and seed: mix at ratio 0 is the real protocol, exactly.
    assert report["mix"]["ratio=0"]["accuracies"] == report["real"]["real"]["accuracies"]
    assert report["lowdata"]["fraction=0.1/real"]["num_train"] < 0.12 * len(train)
    assert report["lowdata"]["fraction=0.1/real"]["accuracy_mean"] < report["real"]["real"]["accuracy_mean"]
    assert domain is not None and accuracy(domain, test) == report["real"]["real"]["accuracies"][0]

    bad_report, _ = run_protocols(train, test, bad, ProtocolPlan(["cas"], seeds=1), FAST, num_classes=10, log=lambda s: None)
    assert bad_report["cas"]["synthetic"]["accuracy_mean"] < 0.1

    write_report(tmp_path, report, {"seeds": 2, "arch": "resnet8", "command": "gandist classify ..."})
    data = json.loads((tmp_path / "classify_report.json").read_text())
    assert data["cas"]["synthetic"]["accuracy_mean"] == report["cas"]["synthetic"]["accuracy_mean"]
    md = (tmp_path / "classify_report.md").read_text()
    assert "| cas | synthetic |" in md and "gandist classify ..." in md
    from PIL import Image

    assert Image.open(tmp_path / "classify_report.png").size == (1040, 380)  # two panels: lowdata, mix


def test_bad_plans_are_clear_errors(digits):
    train, test = digits
    with pytest.raises(BadInputError, match="--protocol cas needs labelled synthetic data"):
        run_protocols(train, test, None, ProtocolPlan(["real", "cas"]), FAST, num_classes=10)
    with pytest.raises(BadInputError, match="unknown protocol 'gan'"):
        run_protocols(train, test, None, ProtocolPlan(["gan"]), FAST, num_classes=10)
    small = train.subset(np.arange(100))
    with pytest.raises(BadInputError, match=r"--synthetic-ratio 2: needs \d+ synthetic images .* has 100"):
        run_protocols(train, test, small, ProtocolPlan(["mix"], synthetic_ratios=[2.0]), FAST, num_classes=10)
    rgb = LabelledImages(np.zeros((10, 3, 8, 8), np.uint8), np.arange(10), train.class_names, "rgb")
    with pytest.raises(BadInputError, match=r"rgb: images are \(3, 8, 8\)"):
        run_protocols(train, test, rgb, ProtocolPlan(["cas"]), FAST, num_classes=10)


def test_a_validation_split_picks_the_kept_weights_and_test_never_does(digits):
    train, test = digits
    rest, val = carve_validation(train, 0.15)
    assert len(rest) + len(val) == len(train) and np.bincount(val.labels).min() >= 1
    settings = ClassifierSettings(steps=40, batch_size=32, lr=0.2)  # a high rate: the last weights are not always the best
    chosen: list[Selection] = []
    kept = train_classifier(rest, 10, settings, seed=0, select_on=val, on_selected=chosen.append)
    final = train_classifier(rest, 10, settings, seed=0)
    (selection,) = chosen
    assert selection.step in {round(40 * (i + 1) / SELECTION_CHECKS) for i in range(SELECTION_CHECKS)}
    assert accuracy(kept, val) == selection.val_accuracy >= accuracy(final, val)
    if selection.step == 40:
        assert accuracy(kept, test) == accuracy(final, test)
    # The test split cannot change what is kept: the same run against another test set keeps the same step.
    plan = ProtocolPlan(["real"], seeds=1)
    a, _ = run_protocols(rest, test, None, plan, settings, num_classes=10, log=lambda s: None, val=val)
    b, _ = run_protocols(rest, test.subset(np.arange(50)), None, plan, settings, num_classes=10, log=lambda s: None, val=val)
    assert a["real"]["real"]["selected_steps"] == b["real"]["real"]["selected_steps"] == [selection.step]
    assert a["real"]["real"]["val_accuracy_mean"] == selection.val_accuracy


def test_classify_cli_reports_which_split_chose_and_which_measured(tmp_path):
    import subprocess
    import sys

    from gandist.data.builtin import write_builtin

    for split in ("fit", "val", "test"):
        write_builtin("digits", tmp_path / split, split=split)
    out = subprocess.run([sys.executable, "-m", "gandist", "classify", "--train", str(tmp_path / "fit"), "--val", str(tmp_path / "val"),
                          "--test", str(tmp_path / "test"), "--seeds", "1", "--steps", "20", "--out", str(tmp_path / "r"), "--no-progress"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r" / "classify_report.json").read_text())
    assert report["meta"]["val"] == str(tmp_path / "val") and report["meta"]["num_val"] == 179
    assert len(report["real"]["real"]["selected_steps"]) == 1
    md = (tmp_path / "r" / "classify_report.md").read_text()
    assert "Weights chosen on the validation split" in md and "| val accuracy | test accuracy |" in md
    carved = subprocess.run([sys.executable, "-m", "gandist", "classify", "--train", str(tmp_path / "fit"), "--val-fraction", "1.5",
                             "--test", str(tmp_path / "test"), "--out", str(tmp_path / "r2")], capture_output=True, text=True)
    assert carved.returncode == 2 and "--val-fraction" in carved.stderr
