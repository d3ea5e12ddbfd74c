"""Labelled synthetic data: class balance, determinism, truncation, classifier filtering, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import ReplayGenerator  # noqa: E402

from gandist.classification.training import ClassifierSettings, LabelledImages, train_classifier
from gandist.data import digits_arrays
from gandist.errors import BadInputError
from gandist.engine.process_group import ProcessGroup
from gandist.metrics.evaluate import make_noise
from gandist.models import ModelSpec, build_generator
from gandist.classification.synthetic import SynthOptions, generate_labelled


def _g(num_classes=10):
    torch.manual_seed(0)
    return build_generator("dcgan", ModelSpec(16, 1, num_classes, 16, 16, 16)).eval()


def test_balanced_labelled_and_deterministic():
    G = _g()
    a, ya, stats = generate_labelled(G, 10, 16, SynthOptions(per_class=7, batch_size=16), ProcessGroup())
    assert a.dtype == np.uint8 and a.shape == (70, 1, 16, 16)
    assert ya.tolist() == np.repeat(np.arange(10), 7).tolist()
    assert stats == {"rounds": 1, "generated": 70, "accepted": 70}
    b, _, _ = generate_labelled(G, 10, 16, SynthOptions(per_class=7, batch_size=5), ProcessGroup())
    np.testing.assert_array_equal(a, b)  # batch size does not change the dataset
    c, _, _ = generate_labelled(G, 10, 16, SynthOptions(per_class=7, seed=1), ProcessGroup())
    assert not np.array_equal(a, c)
    # The label reaches the generator: images of one noise but two labels differ.
    z = torch.randn(1, 16)
    assert not torch.equal(G(z, torch.tensor([0])), G(z, torch.tensor([1])))


def test_truncation_bounds_the_noise():
    z, y = make_noise(5000, 8, 10, seed=0, truncation=0.7)
    assert z.abs().max() <= 0.7 and z.std() < 0.5
    assert np.bincount(y.numpy()).tolist() == [500] * 10


def test_unconditional_generator_is_refused():
    with pytest.raises(BadInputError, match="unconditional"):
        generate_labelled(_g(0), 0, 16, SynthOptions(per_class=3), ProcessGroup())


@pytest.mark.slow
def test_classifier_filter_drops_wrongly_labelled_images():
    x, y = digits_arrays("train")
    x = x[:, None]
    clf = train_classifier(LabelledImages(x, y, [], "train"), 10, ClassifierSettings(steps=60, batch_size=32), seed=0)

    class HalfWrong(ReplayGenerator):
        # Every other latent yields an image of the *next* class: a generator whose conditioning half fails.
        def forward(self, z, y):
            flip = (z[:, 1] > 0).long()
            return super().forward(z, (y + flip) % self.num_classes)

    G = HalfWrong(x, y, z_dim=4)
    opts = SynthOptions(per_class=20, min_confidence=0.9, batch_size=64)
    imgs, labels, stats = generate_labelled(G, 10, 4, opts, ProcessGroup(), classifier=clf, classifier_image_size=16)
    assert labels.tolist() == np.repeat(np.arange(10), 20).tolist()
    assert stats["accepted"] < 0.6 * stats["generated"]  # about half are wrong and rejected
    with torch.no_grad():
        pred = clf(torch.from_numpy(imgs).float() / 127.5 - 1).argmax(1).numpy()
    assert (pred == labels).mean() == 1.0
    unfiltered, ul, _ = generate_labelled(G, 10, 4, SynthOptions(per_class=20), ProcessGroup())
    with torch.no_grad():
        pred_u = clf(torch.from_numpy(unfiltered).float() / 127.5 - 1).argmax(1).numpy()
    assert (pred_u == ul).mean() < 0.75
    with pytest.raises(BadInputError, match=r"--min-confidence 1.01: after 2 rounds"):
        generate_labelled(G, 10, 4, SynthOptions(per_class=20, min_confidence=1.01, max_rounds=2), ProcessGroup(), classifier=clf)


@pytest.mark.slow
def test_auto_threshold_is_the_one_whose_classifier_scores_best_on_val():
    """``--min-confidence auto``: half of this generator's images show the next class; the
    unfiltered set (threshold 0) teaches a classifier those wrong labels, a filtered one does not,
    and the validation split of real digits must see it and choose a filtering threshold."""
    from gandist.classification.filter_tuning import AUTO_THRESHOLDS, tune_min_confidence
    from gandist.classification.training import accuracy

    x, y = digits_arrays("fit")
    x = x[:, None]
    clf = train_classifier(LabelledImages(x, y, [], "fit"), 10, ClassifierSettings(steps=60, batch_size=32), seed=0)
    xv, yv = digits_arrays("val")
    val = LabelledImages(xv[:, None], yv, [str(c) for c in range(10)], "digits val")

    class HalfWrong(ReplayGenerator):
        def forward(self, z, y):
            return super().forward(z, (y + (z[:, 1] > 0).long()) % self.num_classes)

    G = HalfWrong(x, y, z_dim=4)

    def make(t):
        opts = SynthOptions(per_class=20, min_confidence=t, batch_size=64)
        return generate_labelled(G, 10, 4, opts, ProcessGroup(), classifier=clf, classifier_image_size=16)

    settings = ClassifierSettings(steps=60, batch_size=32)
    (imgs, labels, stats), record = tune_min_confidence(make, val, 10, settings, ProcessGroup())
    scores = {c["min_confidence"]: c["val_accuracy"] for c in record["candidates"]}
    assert record["thresholds"] == list(AUTO_THRESHOLDS) == list(scores) and record["chosen_on"] == "val"
    best = max(scores.values())
    assert record["chosen"] == min(t for t, s in scores.items() if s == best)  # the best val score; lower threshold on a tie
    assert record["chosen"] > 0 and scores[0.0] < best - 0.1, scores  # the wrong labels cost the unfiltered set
    assert record["num_val"] == len(val) == 179
    # What it returns is the chosen threshold's set, and its score is that set's classifier on val.
    ref_imgs, ref_labels, ref_stats = make(record["chosen"])
    np.testing.assert_array_equal(imgs, ref_imgs)
    assert stats == ref_stats and stats["accepted"] < stats["generated"]
    data = LabelledImages(imgs, labels, val.class_names, "chosen")
    assert accuracy(train_classifier(data, 10, settings, seed=0), val) == pytest.approx(scores[record["chosen"]])
