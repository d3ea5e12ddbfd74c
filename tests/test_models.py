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


def test_dcgan_rejects_sizes_that_are_not_powers_of_two():
    with pytest.raises(ValueError, match="power of two"):
        build_models("dcgan", ModelSpec(24, 1, 0, 16, 8, 8))


def test_minibatch_std_lets_d_see_a_collapsed_batch():
    from gandist.models.layers import MinibatchStd

    layer = MinibatchStd(group_size=4)
    same = torch.randn(1, 3, 4, 4).repeat(8, 1, 1, 1)  # a generator that ignores its noise
    varied = torch.randn(8, 3, 4, 4)
    assert layer(same).shape == (8, 4, 4, 4)
    assert layer(same)[:, -1].abs().max() < 1e-3
    assert layer(varied)[:, -1].min() > 0.3
    assert layer(torch.randn(6, 3, 4, 4)).shape == (6, 4, 4, 4)  # batch not divisible by 4: groups of 3
