"""The ``zero`` engine on 2 CPU processes (gloo): one DeepSpeed ZeRO engine per network.

What is checked, per the engines issue: parameters identical on both ranks; each rank holds
about half of each network's Adam state (element counts in DeepSpeed's optimizer); checkpoint
then resume reaches the same weights as an uninterrupted run; fp32 ZeRO with accumulation equals
a one-process DDP run with the same global batch; a ZeRO checkpoint saved by 2 processes resumes on 1
through DeepSpeed's universal checkpoint.
"""

from __future__ import annotations

import json

import pytest
import torch

from engine_worker import run_worker, run_workers
from gandist.config import load_config

COMMON = ["train.steps=6", "train.batch_size=16", "optim.lr_g=1e-3", "optim.lr_d=1e-3"]
SAVE_AT = 3


def _assert_same_across_ranks(results, key: str) -> None:
    r0, r1 = results
    for net in ("G", "D"):
        for name, t in r0[key][net].items():
            assert torch.equal(t, r1[key][net][name]), f"{key} {net}.{name} differs between ranks"


def _max_diff(a: dict, b: dict) -> float:
    return max((a[net][k] - b[net][k]).abs().max().item() for net in ("G", "D") for k in a[net])


def _bf16(stage: int) -> list[str]:
    return [*COMMON, "engine.kind=zero", f"engine.zero_stage={stage}", "train.mixed_precision=bf16", "train.grad_accum=2"]


FP32_ZERO = [*COMMON, "engine.kind=zero", "engine.zero_stage=2", "train.grad_accum=2"]
FP32_DDP = [*COMMON, "engine.kind=ddp"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run the tests below compare, in three launches (a launch costs far more than a run here).

    1. 2 processes: ZeRO-1 and ZeRO-2 in bf16, each saving at step 3 and going on to 6; ZeRO-2 in fp32.
    2. 2 processes: ZeRO-1 and ZeRO-2 resumed from their step-3 checkpoints.
    3. 1 process, no launcher: ZeRO-2 resumed from the 2-process checkpoint (universal conversion),
       the same without optimizer state (a control), and DDP in fp32 (the reference).
    """
    base = tmp_path_factory.mktemp("zero")
    save = ["--save-at", str(SAVE_AT)]
    first, _ = run_workers([(base / "bf16_1", _bf16(1), save), (base / "bf16_2", _bf16(2), save),
                            (base / "fp32_2", FP32_ZERO, [])])
    resume = [(base / f"resumed_{s}", _bf16(s), ["--start", str(SAVE_AT), "--resume", str(base / f"bf16_{s}" / "ckpt")])
              for s in (1, 2)]
    second, _ = run_workers(resume)
    from_two = ["--start", str(SAVE_AT), "--resume", str(base / "bf16_2" / "ckpt")]
    third, _ = run_workers([(base / "one", _bf16(2), from_two), (base / "control", _bf16(2), [*from_two, "--weights-only"]),
                            (base / "ddp", FP32_DDP, [])], num_processes=1)
    return {
        "base": base,
        "full": {1: first[0], 2: first[1]}, "fp32_zero": first[2],
        "resumed": {1: second[0], 2: second[1]},
        "one": third[0], "control": third[1], "ddp": third[2],
    }


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_zero_bf16_ranks_agree_and_shard_adam_state(runs, stage):
    full = runs["full"][stage]
    assert [r["world_size"] for r in full] == [2, 2]
    _assert_same_across_ranks(full, "full")  # fp32 master weights gathered from both shards
    _assert_same_across_ranks(full, "local")  # the bf16 weights each rank computes with
    # Training moved the weights (a test of "identical" must not pass on untouched weights).
    assert _max_diff(full[0]["full"], _initial_weights()) > 1e-3
    # Adam keeps 2 moments per parameter; sharded over 2 ranks each rank holds ~1 x numel.
    for r in full:
        for net in ("G", "D"):
            ratio = r["opt_numel"][net] / (2 * r["numel"][net])
            assert 0.45 <= ratio <= 0.55, f"rank {r['rank']} holds {ratio:.3f} of {net}'s Adam state, expected ~0.5"
    # The generated DeepSpeed JSON is written to the run directory, one per network.
    for net in ("G", "D"):
        ds = json.loads((runs["base"] / f"bf16_{stage}" / f"deepspeed_{net}.json").read_text())
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["bf16"]["enabled"] is True
        assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_zero_resume_matches_uninterrupted_run(runs, stage):
    full, resumed = runs["full"][stage], runs["resumed"][stage]
    for r_full, r_resumed in zip(full, resumed):
        assert r_resumed["losses"] == r_full["losses"][SAVE_AT:]
        assert _max_diff(r_full["full"], r_resumed["full"]) == 0.0
        assert _max_diff(r_full["local"], r_resumed["local"]) == 0.0


@pytest.mark.slow
def test_zero_checkpoint_resumes_on_other_world_size(runs):
    """2 -> 1 process: the shards are converted to DeepSpeed's universal checkpoint and Adam's
    moments carry over, so the run continues as the 2-process run did (bf16 tolerance)."""
    full, one, control = runs["full"][2], runs["one"], runs["control"]
    assert (runs["base"] / "bf16_2" / "ckpt.universal" / "DONE").is_file()
    assert one[0]["world_size"] == 1
    assert one[0]["opt_numel"]["G"] == 2 * one[0]["numel"]["G"]  # the one rank now holds all of Adam's state
    # The control resumed without the optimizer state lands far outside the tolerance
    # (measured: 4e-5 with the state, 4e-3 without).
    assert _max_diff(full[0]["full"], one[0]["full"]) < 5e-4
    assert _max_diff(full[0]["full"], control[0]["full"]) > 2e-3


@pytest.mark.slow
def test_zero_fp32_with_accumulation_equals_one_process_ddp(runs):
    """ZeRO-2, 2 ranks x 2 micro-batches of 4 == DDP, 1 rank x 1 batch of 16 (fp32, same global batch)."""
    zero, ddp = runs["fp32_zero"], runs["ddp"]
    _assert_same_across_ranks(zero, "full")
    # Tolerance: fp32 sums in another order (per-rank means, then the all-reduce) over 6 Adam steps.
    assert _max_diff(zero[0]["full"], ddp[0]["full"]) < 1e-5
    # ... and not trivially: the weights moved far more than the tolerance.
    assert _max_diff(zero[0]["full"], _initial_weights()) > 1e-3


def _initial_weights():
    from engine_worker import ToyD, ToyG

    torch.manual_seed(0)
    g, d = ToyG(), ToyD()
    return {"G": g.state_dict(), "D": d.state_dict()}


@pytest.mark.slow
def test_zero_fp16_runs_without_nan(tmp_path):
    from deepspeed.accelerator import get_accelerator

    if not get_accelerator().is_fp16_supported():
        pytest.skip(f"DeepSpeed's {get_accelerator().device_name()} accelerator has no fp16 here "
                    "(CPU needs mkldnn fp16); covered by the GPU check in benchmarks/README.md")
    results, _ = run_worker(tmp_path / "fp16", [*COMMON, "engine.kind=zero", "train.mixed_precision=fp16"])
    for r in results:
        assert all(torch.isfinite(torch.tensor(step)).all() for step in r["losses"])
        assert all(torch.isfinite(t).all() for net in ("G", "D") for t in r["full"][net].values())
        assert r["skipped_steps"]["G"] < 6 and r["skipped_steps"]["D"] < 6


def test_deepspeed_config_is_generated_from_gandist_config(tmp_path):
    from gandist.engine.zero import deepspeed_config

    cfg = load_config(None, ["train.batch_size=64", "train.grad_accum=2", "train.mixed_precision=bf16",
                             "engine.zero_stage=1", "optim.grad_clip=1.5", "engine.offload_optimizer=true"])
    ds = deepspeed_config(cfg, world_size=4)
    assert ds["train_batch_size"] == 64
    assert ds["train_micro_batch_size_per_gpu"] == 8
    assert ds["gradient_accumulation_steps"] == 2
    assert ds["gradient_clipping"] == 1.5
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert ds["zero_optimization"]["stage"] == 1
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    # A user JSON overrides single keys, nested ones included, and keeps the rest.
    user = tmp_path / "ds.json"
    user.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 1000}, "gradient_clipping": 0.5}))
    cfg.engine.deepspeed_config = str(user)
    ds = deepspeed_config(cfg, world_size=4)
    assert ds["zero_optimization"] == {**deepspeed_config(load_config(None, ["engine.zero_stage=1", "engine.offload_optimizer=true"]), 1)["zero_optimization"],
                                       "reduce_bucket_size": 1000}
    assert ds["gradient_clipping"] == 0.5 and ds["train_batch_size"] == 64


def test_bad_user_deepspeed_json_names_the_field(tmp_path):
    from gandist.engine.zero import deepspeed_config
    from gandist.errors import ConfigError

    bad = tmp_path / "ds.json"
    bad.write_text("{not json")
    cfg = load_config(None, [f"engine.deepspeed_config={bad}"])
    with pytest.raises(ConfigError, match="engine.deepspeed_config"):
        deepspeed_config(cfg, world_size=1)
