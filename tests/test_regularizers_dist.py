"""Each penalty under 2 CPU processes (ddp and zero stage 2) equals one process at the same
global batch: the penalties are folded into the one backward each engine all-reduces."""

from __future__ import annotations

import pytest
import torch

from engine_worker import run_workers

COMMON = ["train.steps=4", "train.batch_size=16", "optim.lr_g=1e-3", "optim.lr_d=1e-3"]
PENALTIES = {
    "r1_lazy": ["reg.r1_gamma=10", "reg.every_steps=2"],
    "r2": ["reg.r2_gamma=10"],
    "gp": ["reg.gp_lambda=10"],
    "lecam": ["reg.lecam_weight=1", "reg.lecam_decay=0.5"],
    "ortho": ["reg.ortho_weight=0.01"],
}
TWO_RANKS = {"ddp": ["engine.kind=ddp", "train.grad_accum=2"],
             "zero": ["engine.kind=zero", "engine.zero_stage=2", "train.grad_accum=2"]}


def _max_diff(a: dict, b: dict) -> float:
    return max((a[net][k] - b[net][k]).abs().max().item() for net in ("G", "D") for k in a[net])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("reg")
    two_specs = [(base / f"{engine}_{name}", [*COMMON, *TWO_RANKS[engine], *over], [])
                 for engine in TWO_RANKS for name, over in PENALTIES.items()]
    one_specs = [(base / f"one_{name}", [*COMMON, "engine.kind=ddp", *over], []) for name, over in PENALTIES.items()]
    one_specs.append((base / "one_none", [*COMMON, "engine.kind=ddp"], []))
    two, _ = run_workers(two_specs)
    one, _ = run_workers(one_specs, num_processes=1)
    names = list(PENALTIES)
    return {
        "two": {(engine, name): two[i * len(names) + j] for i, engine in enumerate(TWO_RANKS) for j, name in enumerate(names)},
        "one": {name: one[j][0] for j, name in enumerate(names)},
        "none": one[-1][0],
    }


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(TWO_RANKS))
@pytest.mark.parametrize("penalty", list(PENALTIES))
def test_two_ranks_equal_one_process_with_each_penalty(runs, engine, penalty):
    r0, r1 = runs["two"][(engine, penalty)]
    one = runs["one"][penalty]
    for net in ("G", "D"):
        for name, t in r0["full"][net].items():
            assert torch.equal(t, r1["full"][net][name]), f"{net}.{name} differs between ranks"
    assert _max_diff(r0["full"], one["full"]) < 1e-5
    assert r0["components"] == r1["components"]
    if penalty == "lecam":
        a, b = r0["components"]["reg"]["lecam"], one["components"]["reg"]["lecam"]
        assert a["real"] == pytest.approx(b["real"], abs=1e-5) and a["fake"] == pytest.approx(b["fake"], abs=1e-5)
    # The penalty changed training: the run differs from the same run without it.
    assert _max_diff(one["full"], runs["none"]["full"]) > 1e-4
