"""The quality settings as config: the default run is the digits recipe (``gandist train`` with no arguments and
``--config configs/dcgan_digits.yaml`` resolve to the same config); bad reg/augment/loss values name the field."""

from pathlib import Path

import pytest

from gandist.config import load_config
from gandist.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_default_config_is_the_digits_recipe():
    assert load_config(REPO / "configs" / "dcgan_digits.yaml").to_dict() == load_config(None).to_dict()


@pytest.mark.parametrize("override, field", [
    ("augment.policy=color,rotate", "augment.policy[1]"),
    ("augment.p=1.5", "augment.p"),
    ("augment.ada_target=0.6", "augment.ada_target"),  # without a policy
    ("reg.r1_gamma=-1", "reg.r1_gamma"),
    ("reg.every_steps=0", "reg.every_steps"),
    ("loss.name=wasserstein", "loss.name"),
])
def test_bad_quality_settings_name_the_field(override, field):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override]).validate()
    assert str(error.value).startswith(field + ":")


def test_bad_policy_is_exit_2_at_dry_run(run):
    result = run("train", "--dry-run", "augment.policy=rotate")
    assert result.returncode == 2 and "augment.policy[0]" in result.stderr
