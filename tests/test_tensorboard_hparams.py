"""The resolved config in TensorBoard as hparams (eval metrics linked) and as text, read back with
TensorBoard's own reader."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from gandist.config import Config
from gandist.config_reference import key_docs
from gandist.logger import RunLogger

from test_train import TINY


def read_back(tb_dir):
    acc = EventAccumulator(str(tb_dir), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    values = {}
    for name, v in start.hparams.items():
        kind = v.WhichOneof("kind")
        values[name] = getattr(v, kind)
    metrics = [m.name.tag for m in experiment.metric_infos]
    return acc, values, metrics


def test_config_as_hparams_and_text_with_eval_metrics(tmp_path):
    cfg = Config()
    cfg.train.steps = 7
    logger = RunLogger(tmp_path, True, start_step=0, total_steps=7, progress=False)
    logger.config(cfg.to_dict())
    logger.scalars(5, {"eval/fid": 12.5})
    logger.close()
    acc, values, metrics = read_back(tmp_path / "tb")
    assert values["train.steps"] == 7 and values["train.mixed_precision"] == "no"
    # torch's hparams summary stores booleans as numbers.
    assert values["model.conditional"] == 1.0 and values["preemption.signals"] == "SIGTERM,SIGUSR1"
    assert len(values) == len(key_docs())  # every key
    assert "eval/fid" in metrics and "eval/class_accuracy" in metrics
    assert [e.value for e in acc.Scalars("eval/fid")] == [12.5]  # the metric column has its scalar
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "    train:\n" in text and "steps: 7" in text


@pytest.mark.slow
def test_train_writes_its_resolved_config(run, tmp_path):
    p = run("train", "--run-dir", tmp_path, "train.steps=2", "train.seed=3", *TINY)
    assert p.returncode == 0, p.stderr
    _, values, metrics = read_back(tmp_path / "tb")
    assert values["train.steps"] == 2 and values["train.seed"] == 3 and values["model.g_width"] == 8
    assert "eval/fid" in metrics
