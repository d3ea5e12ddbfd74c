"""Adversarial losses against values computed by hand."""

import math

import pytest
import torch

from gandist.losses import get_loss


def _sig(x):
    return 1 / (1 + math.exp(-x))


REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def test_bce_discriminator_loss_by_hand():
    expected = -(math.log(_sig(2.0)) + math.log(_sig(-1.0))) / 2 - (math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3.0))) / 2
    for name in ("nonsaturating", "minimax"):
        assert get_loss(name).d_loss(REAL, FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_nonsaturating_generator_loss_by_hand():
    expected = -(math.log(_sig(0.5)) + math.log(_sig(-3.0))) / 2
    assert get_loss("nonsaturating").g_loss(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_minimax_generator_loss_by_hand():
    expected = (math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3.0))) / 2
    assert get_loss("minimax").g_loss(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_lsgan_by_hand():
    d = 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.5**2 + 3.0**2) / 2
    g = 0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2
    loss = get_loss("lsgan")
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.g_loss(FAKE).item() == pytest.approx(g, rel=1e-6)


def test_bce_is_stable_for_large_logits():
    big = torch.tensor([200.0])
    assert torch.isfinite(get_loss("nonsaturating").d_loss(big, -big))
    assert get_loss("nonsaturating").g_loss(-big).item() == pytest.approx(200.0)


def test_nonsaturating_gradient_does_not_vanish_when_d_wins():
    """Why it is the default: at D(G(z)) ~ 0 the minimax G gradient vanishes, the NS one does not."""
    x = torch.tensor([-8.0], requires_grad=True)
    get_loss("minimax").g_loss(x).backward()
    minimax_grad = x.grad.abs().item()
    x.grad = None
    get_loss("nonsaturating").g_loss(x).backward()
    assert x.grad.abs().item() > 100 * minimax_grad


def _softplus(x):
    return math.log1p(math.exp(x))


def test_hinge_by_hand():
    # D: max(0, 1 - r) + max(0, 1 + f): r = [2, -1] -> [0, 2]; f = [0.5, -3] -> [1.5, 0]
    d = (0 + 2) / 2 + (1.5 + 0) / 2
    loss = get_loss("hinge")
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.g_loss(FAKE, None).item() == pytest.approx(-(0.5 - 3.0) / 2, rel=1e-6)
    assert not loss.needs_real_in_g


def test_wgan_critic_by_hand():
    loss = get_loss("wgan")
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx((0.5 - 3.0) / 2 - (2.0 - 1.0) / 2, rel=1e-6)
    assert loss.g_loss(FAKE, None).item() == pytest.approx(1.25, rel=1e-6)


def test_rpgan_pairs_by_hand():
    # Pairs (r_i, f_i): (2, 0.5) and (-1, -3). D: softplus(-(r - f)); G: softplus(-(f - r)).
    loss = get_loss("rpgan")
    d = (_softplus(-(2.0 - 0.5)) + _softplus(-(-1.0 + 3.0))) / 2
    g = (_softplus(-(0.5 - 2.0)) + _softplus(-(-3.0 + 1.0))) / 2
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.g_loss(FAKE, REAL).item() == pytest.approx(g, rel=1e-6)
    assert loss.needs_real_in_g


def test_ragan_by_hand():
    # Means: real 0.5, fake -1.25.
    loss = get_loss("ragan")
    d = (_softplus(-(2.0 + 1.25)) + _softplus(-(-1.0 + 1.25))) / 2 + (_softplus(0.5 - 0.5) + _softplus(-3.0 - 0.5)) / 2
    g = (_softplus(-(0.5 - 0.5)) + _softplus(-(-3.0 - 0.5))) / 2 + (_softplus(2.0 + 1.25) + _softplus(-1.0 + 1.25)) / 2
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.g_loss(FAKE, REAL).item() == pytest.approx(g, rel=1e-6)
    assert loss.needs_real_in_g


def test_relativistic_g_losses_push_fakes_above_reals():
    """The G gradient of both relativistic losses raises D(G(z)), like every other G loss."""
    for name in ("rpgan", "ragan", "hinge", "wgan", "nonsaturating"):
        fake = FAKE.clone().requires_grad_(True)
        get_loss(name).g_loss(fake, REAL).backward()
        assert (fake.grad < 0).all(), name


def test_unknown_loss_names_the_field():
    with pytest.raises(ValueError, match="loss.name"):
        get_loss("wasserstein")
