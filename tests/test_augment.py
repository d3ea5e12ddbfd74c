"""DiffAugment transformations and the ADA controller."""

import pytest
import torch

from gandist.augment import POLICIES, AdaController, diff_augment


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


X = torch.rand(6, 3, 16, 16, generator=_gen(9)) * 2 - 1


def test_identity_at_p_zero_bit_for_bit():
    assert torch.equal(diff_augment(X, POLICIES, 0.0, _gen()), X)


@pytest.mark.parametrize("name", POLICIES)
def test_each_transformation_changes_every_image_at_p_one(name):
    out = diff_augment(X, [name], 1.0, _gen())
    assert out.shape == X.shape
    changed = (out - X).flatten(1).abs().amax(1) > 1e-6
    assert changed.float().mean() >= 0.8  # a zero translation can leave an image as it was


def test_differentiable_gradient_reaches_the_input():
    x = X.clone().requires_grad_(True)
    out = diff_augment(x, POLICIES, 1.0, _gen())
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # torch's own check of the Jacobian, in float64 on a small batch
    small = X[:2, :, :8, :8].double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: diff_augment(t, POLICIES, 1.0, _gen(3)), (small,))


def test_seeded_draw_is_reproducible_and_p_does_not_shift_later_draws():
    a = diff_augment(X, POLICIES, 0.5, _gen(1))
    assert torch.equal(a, diff_augment(X, POLICIES, 0.5, _gen(1)))
    assert not torch.equal(a, diff_augment(X, POLICIES, 0.5, _gen(2)))
    # Images that no transformation touched at p=0.5 are returned as they were.
    some = diff_augment(X, ["translation"], 0.3, _gen(4))
    kept = (some == X).flatten(1).all(1)
    assert 0 < kept.sum() < len(X)


def test_translation_moves_pixels_and_fills_zeros():
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 4, 4] = 1.0
    for seed in range(20):
        out = diff_augment(img, ["translation"], 1.0, _gen(seed))
        assert out.sum() == pytest.approx(1.0)  # one pixel, moved by at most 1 (8 * 1/8)
        (y, x), = (out[0, 0] == 1).nonzero().tolist()
        assert abs(y - 4) <= 1 and abs(x - 4) <= 1


def test_cutout_zeroes_a_square_of_half_the_side():
    out = diff_augment(torch.ones(4, 1, 16, 16), ["cutout"], 1.0, _gen())
    zeros = (out == 0).flatten(1).sum(1)
    assert ((zeros > 0) & (zeros <= 64)).all()  # 8x8 at most, clipped at the border


def test_unknown_policy_names_the_field():
    with pytest.raises(ValueError, match="augment.policy"):
        diff_augment(X, ["rotate"], 1.0, _gen())


def test_ada_raises_p_when_d_overfits_and_lowers_it_otherwise():
    ada = AdaController(target=0.6, interval=4, batch_size=64, kimg_to_one=1.0)
    for step in range(1, 9):  # D confident on every real image: sign(D(x)) = +1
        real_logits = torch.full((64,), 3.0)
        ada.observe(torch.sign(real_logits).sum().item(), 64)
        ada.maybe_adjust(step)
    assert ada.rt == 1.0
    assert ada.p == pytest.approx(2 * 64 * 4 / 1000)
    for step in range(9, 13):  # D unsure: half the reals negative, r_t = 0 < target
        real_logits = torch.tensor([1.0, -1.0]).repeat(32)
        ada.observe(torch.sign(real_logits).sum().item(), 64)
        ada.maybe_adjust(step)
    assert ada.rt == 0.0
    assert ada.p == pytest.approx(64 * 4 / 1000)
    for step in range(13, 100):
        ada.observe(-64.0, 64)
        ada.maybe_adjust(step)
    assert ada.p == 0.0  # clamped


def test_ada_state_roundtrip():
    ada = AdaController(target=0.6, interval=4, batch_size=64, kimg_to_one=1.0)
    ada.observe(10.0, 64)
    ada.maybe_adjust(4)
    ada.observe(3.0, 64)
    again = AdaController(target=0.6, interval=4, batch_size=64, kimg_to_one=1.0)
    again.load_state_dict(ada.state_dict())
    assert again.state_dict() == ada.state_dict()
