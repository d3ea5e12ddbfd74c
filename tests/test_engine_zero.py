"""The ``zero`` engine on 2 CPU processes (gloo): one DeepSpeed ZeRO engine per network.

What is checked, per the engines issue: parameters identical on both ranks; each rank holds
about half of each network's Adam state (element counts in DeepSpeed's optimizer); checkpoint
then resume reaches the same weights as an uninterrupted run; fp32 ZeRO with accumulation equals
a one-process DDP run with the same global batch; a ZeRO checkpoint refuses another world size
with an error naming both sizes.
"""

from __future__ import annotations

import json

import pytest
import torch

from engine_worker import run_worker
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


@pytest.fixture(scope="module")
def zero_runs(tmp_path_factory):
    """For each ZeRO stage: a bf16 run that saves at step 3 and goes on to 6, then a run that resumes from step 3."""
    runs = {}
    for stage in (1, 2):
        base = tmp_path_factory.mktemp(f"zero{stage}")
        overrides = [*COMMON, "engine.kind=zero", f"engine.zero_stage={stage}", "train.mixed_precision=bf16", "train.grad_accum=2"]
        full, _ = run_worker(base / "full", overrides, extra=["--save-at", str(SAVE_AT)])
        resumed, _ = run_worker(base / "resumed", overrides,
                                extra=["--start", str(SAVE_AT), "--resume", str(base / "full" / "ckpt")])
        runs[stage] = (base, overrides, full, resumed)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_zero_bf16_ranks_agree_and_shard_adam_state(zero_runs, stage):
    base, _, full, _ = zero_runs[stage]
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
        ds = json.loads((base / "full" / f"deepspeed_{net}.json").read_text())
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["bf16"]["enabled"] is True
        assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_zero_resume_matches_uninterrupted_run(zero_runs, stage):
    _, _, full, resumed = zero_runs[stage]
    for r_full, r_resumed in zip(full, resumed):
        assert r_resumed["losses"] == r_full["losses"][SAVE_AT:]
        assert _max_diff(r_full["full"], r_resumed["full"]) == 0.0
        assert _max_diff(r_full["local"], r_resumed["local"]) == 0.0


@pytest.mark.slow
def test_zero_checkpoint_refuses_other_world_size(zero_runs, tmp_path):
    base, overrides, _, _ = zero_runs[2]
    # One process, no launcher: the engine makes its own one-process group (DESIGN fact 11).
    _, proc = run_worker(tmp_path / "one", overrides, num_processes=1, check=False,
                         extra=["--start", str(SAVE_AT), "--resume", str(base / "full" / "ckpt")])
    assert proc.returncode != 0
    assert "saved by 2 processes but this run has 1" in proc.stderr


@pytest.mark.slow
def test_zero_fp32_with_accumulation_equals_one_process_ddp(tmp_path):
    """ZeRO-2, 2 ranks x 2 micro-batches of 4 == DDP, 1 rank x 1 batch of 16 (fp32, same global batch)."""
    zero, _ = run_worker(tmp_path / "zero", [*COMMON, "engine.kind=zero", "engine.zero_stage=2", "train.grad_accum=2"])
    ddp, _ = run_worker(tmp_path / "ddp", [*COMMON, "engine.kind=ddp"], num_processes=1)
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
