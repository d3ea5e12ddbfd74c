"""The FID Inception-v3 in plain torch: published key names and shapes, 299x299 -> 2048, the
reference's resize, and the checks on the weights file (sha256, keys) with exit code 2."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from gandist.errors import EXIT_BAD_INPUT, ConfigError
from gandist.metrics.extractors import InceptionExtractor, build_extractor
from gandist.metrics.inception import FIDInceptionV3, load_fid_inception, preprocess, resize_to_input

# The published file holds 94 conv+BN layers (6 entries each, with BN's num_batches_tracked) plus
# fc.weight/fc.bias: 566 entries. A few of its shapes, as torch-fidelity / pytorch-fid load them.
NUM_PUBLISHED_KEYS = 566
PUBLISHED_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A state dict with the published names and shapes and random values (BN statistics kept
    in a sane range so activations stay finite through 94 layers)."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, value in FIDInceptionV3().state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        elif key.endswith("bn.weight"):
            state[key] = 1.0 + 0.1 * torch.randn(value.shape, generator=gen)
        elif key.endswith("conv.weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(value.shape, generator=gen) * 0.1
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    torch.save(state, path)
    return path, state


def test_state_dict_has_the_published_names_and_shapes():
    state = FIDInceptionV3().state_dict()
    assert len(state) == NUM_PUBLISHED_KEYS
    for key, shape in PUBLISHED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("AuxLogits") for k in state)


def test_loads_published_keys_and_maps_299_to_2048(random_weights):
    path, state = random_weights
    model = load_fid_inception(path, expected_sha256=None)
    assert torch.equal(model.Mixed_6e.branch7x7dbl_5.conv.weight, state["Mixed_6e.branch7x7dbl_5.conv.weight"])
    assert torch.equal(model.fc.bias, state["fc.bias"])
    images = torch.zeros(2, 3, 299, 299, dtype=torch.uint8)
    images[1, :, :150] = 255  # a black image and a half-white one
    feats, logits = model(images)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # average of ReLU outputs
    assert not torch.allclose(feats[0], feats[1])
    # IS logits are pool_3 times the softmax weights, without the bias (the original TF code).
    torch.testing.assert_close(logits, feats @ state["fc.weight"].T)


def test_files_without_batchnorm_counters_load(random_weights, tmp_path):
    _, state = random_weights
    path = tmp_path / "no_counters.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    assert load_fid_inception(path, expected_sha256=None).fc.weight.shape == (1008, 2048)


def _reference_bilinear(x: np.ndarray, out: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (align_corners=False), written from the formula:
    source coordinate (i + 0.5) * in / out - 0.5, clamped at 0, edge pixels repeated."""
    n = x.shape[-1]
    src = np.maximum((np.arange(out) + 0.5) * n / out - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    w = src - lo
    rows = x[lo, :] * (1 - w)[:, None] + x[hi, :] * w[:, None]
    return rows[:, lo] * (1 - w)[None, :] + rows[:, hi] * w[None, :]


def test_resize_matches_the_reference_bilinear():
    x = np.arange(16, dtype=np.float32).reshape(4, 4) ** 1.5
    ours = resize_to_input(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(ours, _reference_bilinear(x.astype(np.float64), 299), rtol=1e-5, atol=1e-4)
    # 2 -> 4, worked by hand: 1/4 and 3/4 weights inside, edges repeated.
    two = torch.tensor([[[[0.0, 4.0], [8.0, 12.0]]]])
    small = torch.nn.functional.interpolate(two, size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(small[0, 0, 0], torch.tensor([0.0, 1.0, 3.0, 4.0]))
    np.testing.assert_allclose(small[0, 0].numpy(), _reference_bilinear(two[0, 0].numpy(), 4))


def test_preprocess_scales_to_minus_one_one_and_makes_rgb():
    img = torch.zeros(1, 1, 299, 299, dtype=torch.uint8)
    img[..., 1:] = 255
    x = preprocess(img)
    assert x.shape == (1, 3, 299, 299)
    assert x[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0] and x[0, :, 5, 5].tolist() == [1.0, 1.0, 1.0]


def test_extractor_uses_it_without_torchvision(random_weights):
    path, _ = random_weights
    ext = InceptionExtractor(str(path), expected_sha256=None)
    assert ext.name.startswith("fid-inception-v3-") and ext.num_features == 2048 and ext.num_logits == 1008
    feats, logits = ext(torch.full((1, 1, 16, 16), 128, dtype=torch.uint8))
    assert feats.shape == (1, 2048) and logits.shape == (1, 1008)
    assert "torchvision" not in sys.modules and "torch_fidelity" not in sys.modules


def test_wrong_sha256_names_the_file(random_weights):
    path, _ = random_weights
    with pytest.raises(ConfigError, match=rf"metrics.inception_weights: {path}: sha256 [0-9a-f]{{64}} is not that of pt_inception") as e:
        build_extractor("inception", classifier_path="", inception_weights=str(path), device="cpu")
    assert e.value.exit_code == EXIT_BAD_INPUT


def test_wrong_keys_and_shapes_name_the_file(random_weights, tmp_path):
    _, state = random_weights
    renamed = tmp_path / "renamed.pth"
    torch.save({("Mixed_5b.extra" if k == "fc.bias" else k): v for k, v in state.items()}, renamed)
    with pytest.raises(ConfigError, match=rf"{renamed}: not the FID Inception-v3 state dict: 1 missing keys \(e.g. \['fc.bias'\]\), 1 unexpected"):
        load_fid_inception(renamed, expected_sha256=None)
    reshaped = tmp_path / "reshaped.pth"
    torch.save({**state, "fc.weight": torch.zeros(1000, 2048)}, reshaped)
    with pytest.raises(ConfigError, match=rf"{reshaped}: fc.weight has shape \(1000, 2048\), expected \(1008, 2048\)"):
        load_fid_inception(reshaped, expected_sha256=None)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=rf"{garbage}: not a readable torch state dict"):
        load_fid_inception(garbage, expected_sha256=None)


def test_train_dry_run_refuses_a_wrong_weights_file_with_exit_2(random_weights, run):
    path, _ = random_weights
    p = run("train", "--dry-run", "eval.extractor=inception", f"metrics.inception_weights={path}")
    assert p.returncode == EXIT_BAD_INPUT, p.stderr
    assert f"metrics.inception_weights: {path}: sha256" in p.stderr and "pt_inception-2015-12-05-6726825d.pth" in p.stderr
