"""``gandist config``: every key with type, default and doc, from the README reference's source."""

from __future__ import annotations

from gandist.cli import main
from gandist.config_reference import key_docs


def test_one_key(capsys):
    assert main(["config", "train.mixed_precision"]) == 0
    assert capsys.readouterr().out == (
        "train.mixed_precision (no | bf16 | fp16) default 'no'\n"
        "    Autocast precision of forward passes (fp16 adds a gradient scaler).\n"
    )


def test_every_key_and_sections(capsys):
    assert main(["config", "--defaults"]) == 0
    out = capsys.readouterr().out
    docs = key_docs()
    assert len(docs) > 50
    for d in docs:
        assert f"{d.key} ({d.plain_type}) default {d.default!r}\n" in out
    assert main(["config", "eval"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("eval.") and all(line.startswith(("eval.", "    ")) for line in lines)


def test_run_dir_values(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("train:\n  steps: 7\n")
    assert main(["config", "--run-dir", str(tmp_path), "train.steps"]) == 0
    assert "train.steps (int) default 3000, in this run: 7 (changed)" in capsys.readouterr().out
    assert main(["config", "--run-dir", str(tmp_path / "nope")]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_unknown_key_exit_2(capsys):
    assert main(["config", "trian.steps"]) == 2
    assert "did you mean train.steps?" in capsys.readouterr().err


def test_train_help_points_at_it(capsys):
    assert main(["train", "--help"]) == 0
    assert "gandist config" in capsys.readouterr().out
