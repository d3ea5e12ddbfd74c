"""The default run is the digits recipe: ``gandist train`` with no arguments and
``--config configs/dcgan_digits.yaml`` resolve to the same config."""

from pathlib import Path

from gandist.config import load_config

REPO = Path(__file__).resolve().parents[1]


def test_default_config_is_the_digits_recipe():
    assert load_config(REPO / "configs" / "dcgan_digits.yaml").to_dict() == load_config(None).to_dict()
