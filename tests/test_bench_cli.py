"""``gandist bench`` on CPU with tiny settings: it runs every variant and the pipeline in one
process and writes the JSON the README table and the scaling script read."""

from __future__ import annotations

import json

import pytest

from gandist.perf.bench import VARIANTS

ROW_KEYS = {"model", "image_size", "batch", "variant", "engine", "precision", "images_per_sec", "images_per_sec_rounds",
            "step_ms", "flops_per_step", "tflops_per_sec", "mfu", "peak_tflops", "vs_plain_fp32",
            "vs_plain_same_precision", "state_bytes", "peak_step_bytes", "params_G", "params_D"}


@pytest.mark.slow
def test_bench_runs_every_variant_and_writes_the_json(run, tmp_path):
    out = tmp_path / "bench.json"
    res = run("bench", "--device", "cpu", "--models", "dcgan", "--image-size", "8", "--width", "8", "--batch", "4",
              "--steps", "1", "--rounds", "2", "--warmup", "1", "--pipeline-images", "64", "--peak-tflops", "1",
              "--out", out, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device_type"] == "cpu" and result["command"].startswith("gandist bench")
    rows = result["rows"]
    assert [r["variant"] for r in rows] == list(VARIANTS)
    for r in rows:
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        assert r["images_per_sec"] > 0 and len(r["images_per_sec_rounds"]) == 2
        assert r["flops_per_step"] > 0 and r["state_bytes"] > 0
        assert r["mfu"] == pytest.approx(r["tflops_per_sec"] / 1.0)  # --peak-tflops 1
        assert r["peak_step_bytes"] is None  # CUDA allocator only
    by = {r["variant"]: r for r in rows}
    assert by["plain_fp32"]["vs_plain_fp32"] == 1.0
    assert by["ddp_bf16"]["vs_plain_same_precision"] == pytest.approx(
        by["ddp_bf16"]["images_per_sec"] / by["plain_bf16"]["images_per_sec"])
    # The same G and D in every variant: the FLOPs are counted once per model.
    assert len({r["flops_per_step"] for r in rows}) == 1
    # ddp: fp32 weights + Adam's two moments, 12 bytes per parameter (+ BatchNorm buffers); ZeRO at
    # one rank: bf16 weights + moments + fp32 master copy, 14.
    params = by["ddp_bf16"]["params_G"] + by["ddp_bf16"]["params_D"]
    assert 12 * params <= by["ddp_bf16"]["state_bytes"] < 12.1 * params
    assert 14 * params <= by["zero1_bf16"]["state_bytes"] < 14.1 * params
    assert [p["source"] for p in result["pipeline"]] == ["memory", "blocks", "device_cache"]
    assert result["pipeline"][0]["vs_memory"] == 1.0
    assert "vs plain fp32" in res.stdout and "device_cache" in res.stdout


def test_bench_bad_input_exits_2(run):
    res = run("bench", "--device", "cpu", "--models", "nosuchmodel")
    assert res.returncode == 2 and "--models: unknown nosuchmodel" in res.stderr
    res = run("bench", "--device", "cpu", "--variants", "ddp_fp64")
    assert res.returncode == 2 and "--variants: unknown ddp_fp64" in res.stderr
    res = run("bench", "--device", "cpu", "--biggan-sizes", "64,big")
    assert res.returncode == 2 and "--biggan-sizes: comma-separated integers" in res.stderr


@pytest.mark.slow
def test_bench_quick_measures_dcgan_gandist_fp32_against_plain_and_prints_the_ratio(run, tmp_path):
    out = tmp_path / "quick.json"
    # --quick picks the model, the two variants and skips the pipeline; the sizes given here
    # only make the test fast.
    res = run("bench", "--device", "cpu", "--quick", "--image-size", "8", "--width", "8", "--batch", "4",
              "--steps", "1", "--rounds", "2", "--warmup", "1", "--out", out, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [(r["model"], r["variant"]) for r in result["rows"]] == [("dcgan", "plain_fp32"), ("dcgan", "ddp_fp32")]
    assert result["pipeline"] == []
    ratio = result["rows"][1]["vs_plain_same_precision"]
    assert ratio == pytest.approx(result["rows"][1]["images_per_sec"] / result["rows"][0]["images_per_sec"])
    assert f"runs at {ratio:.3f}x the images/s of a plain PyTorch loop" in res.stdout
