"""Property test: any drawn config value or shard-manifest field gives exit 0 or 2, never a
traceback (exit 1). The CLI's ``main`` runs in process, so each example costs milliseconds."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import typing
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from data_helpers import write_uneven  # noqa: E402
from gandist.cli import main  # noqa: E402
from gandist.config import Config  # noqa: E402
from gandist.data.manifest import MANIFEST_NAME  # noqa: E402


def _config_keys() -> list[str]:
    keys = []
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(typing.get_type_hints(Config)[section.name]):
            keys.append(f"{section.name}.{f.name}")
    return keys


KEYS = _config_keys()
# Values of every YAML type, including the awkward ones: huge and negative numbers, non-finite
# floats, strings with NUL bytes, lists, mappings, null.
scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.sampled_from(["", "0", "-1", "1e30", ".inf", "nan", "ddp", "zero", "bf16", "SIGUSR1", "dcgan", "mlp", "\x00", "~"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _run(capsys, args: list[str]) -> tuple[int, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.err


@FAST
@given(st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=4))
def test_drawn_overrides_exit_0_or_2(capsys, drawn):
    overrides = [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                 for key, value in drawn.items()]
    code, err = _run(capsys, ["train", "--dry-run", *overrides])
    assert code in (0, 2), (overrides, err)
    assert "Traceback" not in err, (overrides, err)


@FAST
@given(st.one_of(
    st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=4).map(
        lambda d: {k.split(".")[0]: {k.split(".")[1]: v} for k, v in d.items()}),
    values,
    st.dictionaries(st.one_of(st.integers(), st.text(max_size=8), st.none(), st.booleans()), values, max_size=3),
))
def test_drawn_config_files_exit_0_or_2(capsys, drawn):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(drawn))
        code, err = _run(capsys, ["train", "--dry-run", "--config", str(path)])
    assert code in (0, 2), (drawn, err)
    assert "Traceback" not in err, (drawn, err)


@FAST
@given(st.binary(max_size=64))
def test_drawn_config_bytes_exit_0_or_2(capsys, raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(raw)
        code, err = _run(capsys, ["train", "--dry-run", "--config", str(path)])
    assert code in (0, 2), (raw, err)
    assert "Traceback" not in err, (raw, err)


@pytest.fixture(scope="module")
def good_shards(tmp_path_factory) -> Path:
    return write_uneven(tmp_path_factory.mktemp("prop") / "d", [3, 4])


MANIFEST_FIELDS = ["num_samples", "shards", "num_classes", "class_names", "block_size", "sample_format", "image", "format"]
SHARD_FIELDS = ["name", "num_samples", "sha256", "num_bytes"]
names = st.one_of(st.sampled_from(["000000.tar", "000001.tar", "../x.tar", "/etc/passwd", "a/../../b.tar", "", ".", "..",
                                   "pipe:cat /etc/passwd", "C:\\x.tar", "sub/000000.tar"]), st.text(max_size=12))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    top=st.dictionaries(st.sampled_from(MANIFEST_FIELDS), values, max_size=2),
    shard=st.dictionaries(st.sampled_from(SHARD_FIELDS), st.one_of(values, names), max_size=2),
    drop=st.lists(st.sampled_from(MANIFEST_FIELDS + SHARD_FIELDS), max_size=2),
    verb=st.sampled_from(["verify", "inspect"]),
)
def test_drawn_manifest_fields_exit_0_or_2(capsys, good_shards, top, shard, drop, verb):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "d"
        shutil.copytree(good_shards, root)
        m = json.loads((root / MANIFEST_NAME).read_text())
        m.update(top)
        if isinstance(m.get("shards"), list) and m["shards"] and isinstance(m["shards"][0], dict):
            m["shards"][0].update(shard)
            for key in drop:
                m["shards"][0].pop(key, None)
        for key in drop:
            m.pop(key, None)
        (root / MANIFEST_NAME).write_text(json.dumps(m, default=str))
        args = ["shards", verb, str(root)] + (["--grid", str(Path(tmp) / "g.png")] if verb == "inspect" else [])
        code, err = _run(capsys, args)
    assert code in (0, 2), (m, err)
    assert "Traceback" not in err, (m, err)
