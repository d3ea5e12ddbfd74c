"""A one-process run inside a process group (a one-process torchrun or accelerate launch, or
gandist bench's group for DeepSpeed) trains its networks unwrapped: a one-rank DDP would only
copy gradients into buckets and all-reduce them with itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import gandist_env

SCRIPT = textwrap.dedent("""
    import gc, tempfile
    from pathlib import Path
    import torch
    from accelerate import Accelerator
    from torch.nn.parallel import DistributedDataParallel as DDP
    from gandist.engine.zero import ensure_process_group
    from gandist.models import ModelSpec
    from gandist.perf.loops import gandist_loop, synthetic_batch

    ensure_process_group(30.0)
    accelerator = Accelerator(cpu=True, mixed_precision="no")
    assert accelerator.num_processes == 1 and accelerator.state.distributed_type.name == "MULTI_CPU"
    spec = ModelSpec(image_size=8, channels=1, num_classes=2, z_dim=4, g_width=8, d_width=8)
    images, labels = synthetic_batch(4, spec, "cpu")
    loop = gandist_loop("dcgan", spec, 4, "ddp", "no", Path(tempfile.mkdtemp()), accelerator, images=images, labels=labels)
    before = [p.detach().clone() for p in loop.g.parameters()]
    loop.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, loop.g.parameters())), "G did not train"
    print("DDP wrappers:", sum(isinstance(o, DDP) for o in gc.get_objects()))
    torch.distributed.destroy_process_group()
""")


def test_one_process_in_a_process_group_trains_without_a_ddp_wrapper():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=gandist_env({"OMP_NUM_THREADS": "1"}),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DDP wrappers: 0" in proc.stdout, proc.stdout
