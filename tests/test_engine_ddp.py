"""The ``ddp`` engine on 2 CPU processes (gloo) against one process with the same global batch."""

from __future__ import annotations

import pytest
import torch

from engine_worker import run_worker

COMMON = ["engine.kind=ddp", "train.steps=6", "train.batch_size=16", "optim.lr_g=1e-3", "optim.lr_d=1e-3"]


def _max_diff(a: dict, b: dict) -> float:
    return max((a[net][k] - b[net][k]).abs().max().item() for net in ("G", "D") for k in a[net])


@pytest.mark.slow
def test_ddp_two_ranks_equal_one_process_with_same_global_batch(tmp_path):
    # 2 ranks x 2 accumulated micro-batches of 4 vs 1 rank x 1 batch of 16: the same 16 images per step.
    # Started by torchrun (the zero tests use accelerate launch): both launchers must work.
    two, _ = run_worker(tmp_path / "two", [*COMMON, "train.grad_accum=2"], launcher="torchrun")
    one, _ = run_worker(tmp_path / "one", COMMON, num_processes=1)
    r0, r1 = two
    for net in ("G", "D"):
        for name, t in r0["full"][net].items():
            assert torch.equal(t, r1["full"][net][name]), f"{net}.{name} differs between ranks"
    # fp32 tolerance: the same sums in another order (per micro-batch, then the all-reduce), 6 Adam steps.
    assert _max_diff(r0["full"], one[0]["full"]) < 1e-5
    # The all-reduced losses of each step agree with the one-process losses too.
    for (d2, g2), (d1, g1) in zip(r0["losses"], one[0]["losses"]):
        assert abs(d2 - d1) < 1e-4 and abs(g2 - g1) < 1e-4
    # Not trivially equal: training moved the weights far beyond the tolerance.
    torch.manual_seed(0)
    from engine_worker import ToyD, ToyG

    init = {"G": ToyG().state_dict(), "D": ToyD().state_dict()}
    assert _max_diff(r0["full"], init) > 1e-3
