"""Model registry: shapes, output range and conditioning for every model."""

import pytest
import torch

from gandist.models import ModelSpec, available_models, build_models


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("size, channels", [(16, 1), (32, 3)])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_shapes_and_range(name, size, channels, num_classes):
    torch.manual_seed(0)
    g, d = build_models(name, ModelSpec(size, channels, num_classes, z_dim=16, g_width=8, d_width=8))
    y = torch.randint(0, 10, (4,)) if num_classes else None
    x = g(torch.randn(4, 16), y)
    assert x.shape == (4, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1  # tanh output, like the real images' [-1, 1]
    assert d(x, y).shape == (4,)


@pytest.mark.parametrize("name", available_models())
def test_conditional_models_use_the_label(name):
    torch.manual_seed(0)
    g, d = build_models(name, ModelSpec(16, 1, 10, z_dim=16, g_width=8, d_width=8))
    g.eval(), d.eval()
    z = torch.randn(2, 16)
    assert not torch.allclose(g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1])))
    x = torch.randn(2, 1, 16, 16)
    assert not torch.allclose(d(x, torch.tensor([0, 0])), d(x, torch.tensor([3, 3])))
    with pytest.raises(ValueError, match="needs class labels"):
        g(z, None)


@pytest.mark.parametrize("size", [8, 12, 20, 28, 48, 56])
def test_dcgan_builds_sides_of_the_form_base_times_power_of_two(size):
    """28 = 7*4 and 48 = 6*8 train without data.image_size: G starts at 7x7 / 6x6, D ends there."""
    g, d = build_models("dcgan", ModelSpec(size, 3, 10, z_dim=8, g_width=8, d_width=8))
    y = torch.arange(4) % 10
    x = g(torch.randn(4, 8), y)
    assert x.shape == (4, 3, size, size)
    assert d(x, y).shape == (4,)


def test_dcgan_refuses_a_side_it_cannot_make():
    with pytest.raises(ValueError, match="36x36.*data.image_size"):
        build_models("dcgan", ModelSpec(36, 1, 0, 16, 8, 8))


def test_conditional_dcgan_multiplies_noise_by_the_class_embedding():
    """z * embed(y): zero noise gives the same image for every class, so G cannot make a class
    without using z (concatenation allowed one fixed prototype per class)."""
    torch.manual_seed(0)
    g, _ = build_models("dcgan", ModelSpec(16, 1, 10, z_dim=8, g_width=8, d_width=8))
    g.eval()
    zero = torch.zeros(2, 8)
    assert torch.equal(g(zero, torch.tensor([0, 0])), g(zero, torch.tensor([5, 7])))
    z = torch.randn(2, 8)
    assert not torch.allclose(g(z, torch.tensor([0, 0])), g(z, torch.tensor([5, 5])))


def test_minibatch_std_lets_d_see_a_collapsed_batch():
    from gandist.models.layers import MinibatchStd

    layer = MinibatchStd(group_size=4)
    same = torch.randn(1, 3, 4, 4).repeat(8, 1, 1, 1)  # a generator that ignores its noise
    varied = torch.randn(8, 3, 4, 4)
    assert layer(same).shape == (8, 4, 4, 4)
    assert layer(same)[:, -1].abs().max() < 1e-3
    assert layer(varied)[:, -1].min() > 0.3
    assert layer(torch.randn(6, 3, 4, 4)).shape == (6, 4, 4, 4)  # batch not divisible by 4: groups of 3
