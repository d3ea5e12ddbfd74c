"""The side rule every model follows: base * 2^k, base 4..7, side >= 8."""

import pytest

from gandist.errors import ConfigError
from gandist.models.sizes import check_image_size, stage_plan, supported_sizes


@pytest.mark.parametrize("side, plan", [(8, (4, 1)), (16, (4, 2)), (28, (7, 2)), (32, (4, 3)), (48, (6, 3)),
                                        (96, (6, 4)), (112, (7, 4)), (128, (4, 5))])
def test_stage_plan_factors_the_side(side, plan):
    assert stage_plan(side) == plan
    base, k = plan
    assert base * 2 ** k == side


@pytest.mark.parametrize("side", [0, 4, 5, 7, 9, 18, 36, 100, 120])
def test_unsupported_sides_have_no_plan(side):
    assert stage_plan(side) is None


def test_check_image_size_names_field_model_and_sizes():
    with pytest.raises(ConfigError) as e:
        check_image_size("resnet", 36)
    message = str(e.value)
    assert message.startswith("data.image_size:") and "'resnet'" in message and "28" in message and "48" in message
    assert 36 not in supported_sizes() and 28 in supported_sizes()
