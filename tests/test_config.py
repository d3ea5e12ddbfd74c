"""Config: YAML + overrides -> typed dataclasses; every mistake names its field."""

import pytest
import yaml

from gandist.config import Config, changed_keys, load_config
from gandist.errors import ConfigError


def test_defaults_validate():
    cfg = load_config()
    assert isinstance(cfg, Config)
    cfg.validate()
    assert cfg.optim.lr_g == 2e-4 and (cfg.optim.beta1, cfg.optim.beta2) == (0.5, 0.999)
    assert cfg.loss.name == "nonsaturating"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({"train": {"steps": 10, "batch_size": 32}, "model": {"name": "mlp"}}))
    cfg = load_config(path, ["train.steps=20", "optim.lr_d=1e-3", "model.conditional=false", "train.mixed_precision=bf16"])
    assert cfg.train.steps == 20  # the override wins over the file
    assert cfg.train.batch_size == 32  # the file wins over the default
    assert cfg.model.name == "mlp" and cfg.model.conditional is False
    assert cfg.optim.lr_d == pytest.approx(1e-3) and isinstance(cfg.optim.lr_d, float)
    assert cfg.train.mixed_precision == "bf16"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("no.such.key=1", "no.such.key: unknown config key"),
        ("train.stpes=1", "did you mean train.steps"),
        ("train.steps=abc", "train.steps: expected an integer"),
        ("train.steps=1.5", "train.steps: expected an integer"),
        ("model.conditional=maybe", "model.conditional: expected true or false"),
        ("train.mixed_precision=fp8", "allowed values: no, bf16, fp16"),
        ("engine.kind=fsdp", "engine.kind: invalid value 'fsdp'; allowed values: ddp, zero"),
        ("train=3", "train: is a section"),
        ("trainsteps", "expected key.sub=value"),
    ],
)
def test_bad_overrides_name_the_field(override, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(None, [override]).validate()
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optim.lr_g=-1", "optim.lr_g: must be > 0"),
        ("model.name=stylegan9", "model.name: unknown model 'stylegan9'; allowed values: biggan, dcgan, mlp, r3, resnet"),
        ("checkpoint.keep=1", "checkpoint.keep: must be >= 2"),
        ("train.batch_size=0", "train.batch_size: must be >= 1"),
        ("engine.zero_stage=3", "engine.zero_stage: must be one of 1, 2"),
        ("data.channels=2", "data.channels"),
    ],
)
def test_invalid_values_name_the_field(override, fragment):
    cfg = load_config(None, [override])
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert fragment in str(info.value)


def test_yaml_booleans_read_as_the_literal_they_spell(tmp_path):
    """YAML 1.1 turns a bare `no` into False; train.mixed_precision=no must still mean "no"."""
    assert load_config(None, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  mixed_precision: no\n")
    assert load_config(path).train.mixed_precision == "no"


def test_batch_size_must_divide_world_size_times_accumulation():
    cfg = load_config(None, ["train.batch_size=64", "train.grad_accum=2"])
    cfg.validate(world_size=4)
    assert cfg.train.batch_size_per_rank(4) == 8
    with pytest.raises(ConfigError, match=r"train.batch_size: 64 is not divisible by world size 3"):
        cfg.validate(world_size=3)


def test_yaml_unknown_section_and_bad_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("trainer:\n  steps: 3\n")
    with pytest.raises(ConfigError, match="trainer: unknown config key; did you mean train"):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_yaml_and_changed_keys(tmp_path):
    cfg = load_config(None, ["train.steps=7", "model.name=mlp"])
    again = load_config(None, [])
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path).to_dict() == cfg.to_dict()
    assert changed_keys(again.to_dict(), cfg.to_dict()) == ["model.name", "train.steps"]


def test_every_field_has_a_docstring():
    """STYLE habit 1: each field carries a one-line doc (here: a string literal after it)."""
    import ast
    import inspect

    import gandist.config as module

    tree = ast.parse(inspect.getsource(module))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Config") and node.name != "Config":
            body = node.body
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.AnnAssign):
                    nxt = body[i + 1] if i + 1 < len(body) else None
                    assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), f"{node.name}.{stmt.target.id} has no doc"
