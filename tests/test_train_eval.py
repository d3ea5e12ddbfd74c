"""Periodic evaluation inside training: eval/* scalars, and ckpt/best follows the best FID."""

import json

import pytest
import torch

from test_train import TINY


@pytest.mark.slow
def test_periodic_eval_logs_metrics_and_keeps_best_checkpoint(run, tmp_path):
    d = tmp_path / "run"
    res = run("train", "--run-dir", d, "train.steps=6", *TINY, "eval.every_steps=3", "eval.num_samples=60",
              "metrics.kid_subset_size=20", "metrics.kid_num_subsets=5", "metrics.classifier_steps=20",
              "metrics.batch_size=30")
    assert res.returncode == 0, res.stderr[-3000:]
    evals = [x for x in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "eval/fid" in x]
    assert [x["step"] for x in evals] == [3, 6]
    assert all(x["eval/fid"] >= 0 and "eval/kid" in x and "eval/precision" in x for x in evals)

    best = json.loads((d / "ckpt" / "best" / "BEST.json").read_text())
    best_eval = min(evals, key=lambda x: x["eval/fid"])
    assert best["step"] == best_eval["step"] and best["fid"] == pytest.approx(best_eval["eval/fid"])
    # ckpt/best is a complete checkpoint of that step (same weights as the step's own folder).
    a = torch.load(d / "ckpt" / "best" / "model.pt", weights_only=True)
    b = torch.load(d / "ckpt" / f"step_{best['step']:08d}" / "model.pt", weights_only=True)
    assert all(torch.equal(a["G_ema"][k], b["G_ema"][k]) for k in a["G_ema"])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert "eval/fid" in EventAccumulator(str(d / "tb")).Reload().Tags()["scalars"]
