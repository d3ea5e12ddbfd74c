"""evaluate_generator in one process: sane numbers on a perfect vs an untrained generator, the
real-feature cache, the automatic domain classifier, and the errors for bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import ReplayGenerator, eval_config, make_classifier, make_digits_shards  # noqa: E402

from gandist.data import read_all, resolve_dataset
from gandist.errors import BadInputError, ConfigError
from gandist.metrics import evaluate_generator
from gandist.engine.process_group import ProcessGroup
from gandist.metrics.extractors import InceptionExtractor, build_extractor
from gandist.models import ModelSpec, build_generator


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    train, test = make_digits_shards(root)
    return root, train, test


def _eval(G, cfg, info=None, n=300):
    return evaluate_generator(G, cfg=cfg, dataset_info=info or resolve_dataset(cfg.data), engine=ProcessGroup(), num_samples=n, log=lambda s: None)


@pytest.mark.slow
def test_perfect_generator_scores_far_better_than_untrained(digits, tmp_path):
    root, train, test = digits
    cfg = eval_config(train, tmp_path / "cache", make_classifier(train, root / "clf.safetensors"))
    x, y = read_all(str(test))  # held-out real images: a perfect generator, not a copy of the reference set
    perfect = _eval(ReplayGenerator(x, y), cfg)
    torch.manual_seed(0)
    untrained = _eval(build_generator("dcgan", ModelSpec(16, 1, 10, 8, 16, 16)).eval(), cfg)
    assert perfect.extractor == untrained.extractor and perfect.extractor.startswith("classifier-resnet8-")
    assert perfect["fid"] < 0.1 * untrained["fid"], (perfect["fid"], untrained["fid"])
    assert perfect["kid"] < 0.1 * untrained["kid"]
    assert perfect["precision"] > 0.6 and perfect["recall"] > 0.5
    assert untrained["precision"] < 0.2
    assert perfect["class_accuracy"] > 0.8 and untrained["class_accuracy"] < 0.5
    assert perfect["fid_class_mean"] < untrained["fid_class_mean"]
    assert perfect["is"] > 3 * untrained["is"] / 2


@pytest.mark.slow
def test_real_features_are_cached_and_classifier_trained_on_first_use(digits, tmp_path):
    root, _, _ = digits
    import shutil

    train = tmp_path / "train"
    shutil.copytree(root / "train", train)
    cfg = eval_config(train, tmp_path / "cache")  # no metrics.classifier: one is trained and cached
    info = resolve_dataset(cfg.data)
    torch.manual_seed(0)
    G = build_generator("dcgan", ModelSpec(16, 1, 10, 8, 16, 16)).eval()
    first = _eval(G, cfg, info)
    assert len(list((tmp_path / "cache").glob("classifier-*.safetensors"))) == 1
    assert len(list((tmp_path / "cache").glob("real-*.npz"))) == 1
    for tar in train.glob("*.tar"):  # the real set is not read again: its statistics are cached
        tar.unlink()
    second = _eval(G, cfg, info)
    assert dict(second) == dict(first)


def test_too_few_samples_for_kid_names_the_numbers(digits, tmp_path):
    root, train, _ = digits
    cfg = eval_config(train, tmp_path / "cache", make_classifier(train, root / "clf.safetensors"), **{"metrics.kid_subset_size": 500})
    torch.manual_seed(0)
    G = build_generator("dcgan", ModelSpec(16, 1, 10, 8, 16, 16)).eval()
    with pytest.raises(BadInputError, match=r"kid_subset_size=500 .*got 1438 real and 200 generated"):
        _eval(G, cfg, n=200)


def test_inception_weights_are_never_downloaded(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics.inception_weights: .*never downloads"):
        InceptionExtractor("")
    missing = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    with pytest.raises(ConfigError, match=rf"metrics.inception_weights: file not found: {missing}"):
        build_extractor("inception", classifier_path="", inception_weights=str(missing), device="cpu")


def test_missing_classifier_file_is_a_clear_error(digits, tmp_path):
    _, train, _ = digits
    cfg = eval_config(train, tmp_path / "cache", tmp_path / "nope.safetensors")
    G = build_generator("dcgan", ModelSpec(16, 1, 10, 8, 16, 16)).eval()
    with pytest.raises(BadInputError, match=r"metrics.classifier: file not found: .*nope.safetensors"):
        _eval(G, cfg)
