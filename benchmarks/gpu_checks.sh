#!/usr/bin/env bash
# The checks run on a lent GPU machine (NVIDIA H100), through the device tool, from the
# repository root, with deepspeed/webdataset and their missing dependencies carried as wheels
# in .whl/ (see /work/.library/device/README.md). Usage: bash benchmarks/gpu_checks.sh OUTDIR PART
#   PART a: training-step overhead on CUDA, mixed precision through the CLI (ddp/zero, bf16/fp16)
#   PART b: engines benchmark (ddp vs zero1 vs zero2, bf16 and fp16), loader benchmark
#   PART c: the default digits run and the step-overhead benchmark on 2 CPU cores (taskset)
#   PART d: issue 15: `gandist bench` on the GPU (every registered model, pipeline, MFU), the
#           loader at 0/1/2/4/8 workers with batches copied to the GPU, the scaling estimate
set -uo pipefail
OUTDIR=$1
PART=$2
mkdir -p "$OUTDIR"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 GANDIST_CACHE=/tmp/gandist-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUTDIR/device.txt"
python3 -c "import torch, accelerate, deepspeed, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'accelerate', accelerate.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | grep -v WARN | tee -a "$OUTDIR/device.txt"
nproc | sed 's/^/cpu cores: /' | tee -a "$OUTDIR/device.txt"

cli_run() {  # name, then gandist train overrides; prints the last log line and the exit code
    local name=$1; shift
    python3 -m gandist train --run-dir "/tmp/runs/$name" log.progress=false log.every_steps=100 "$@" > "/tmp/runs/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $(grep -E '^step [0-9]+:' "/tmp/runs/$name.log" | tail -1)"
    [ $rc -eq 0 ] || tail -20 "/tmp/runs/$name.log"
}

if [ "$PART" = a ]; then
    for args in "--image-size 64 --channels 3 --width 64 --batch 256 --precision bf16" \
                "--image-size 64 --channels 3 --width 64 --batch 256 --precision no" \
                "--image-size 16 --width 32 --batch 64 --precision no"; do
        python3 benchmarks/train_step.py --device cuda $args --steps 50 --rounds 5 --out "$OUTDIR/train_step.md" 2>&1 | grep -E "ratio|\| (plain|gandist)"
    done
    mkdir -p /tmp/runs
    {
        cli_run ddp_fp16 train.mixed_precision=fp16 train.steps=600
        cli_run ddp_bf16 train.mixed_precision=bf16 train.steps=600
        cli_run zero2_bf16 engine.kind=zero train.mixed_precision=bf16 train.steps=600
        cli_run zero1_fp16 engine.kind=zero engine.zero_stage=1 train.mixed_precision=fp16 train.steps=600
        cli_run zero2_fp16 engine.kind=zero train.mixed_precision=fp16 train.steps=600
    } 2>&1 | tee "$OUTDIR/mixed_precision_cli.txt"
fi

if [ "$PART" = c ]; then
    mkdir -p /tmp/runs
    # The README's first command on 2 CPU cores of this machine: its wall time.
    start=$(date +%s)
    CUDA_VISIBLE_DEVICES= taskset -c 0,1 python3 -m gandist train --run-dir /tmp/runs/cpu2 log.progress=false > /tmp/runs/cpu2.log 2>&1
    echo "default run on 2 CPU cores (taskset -c 0,1): rc=$? wall $(( $(date +%s) - start )) s; $(grep -E '^step 1500' /tmp/runs/cpu2.log)" | tee "$OUTDIR/default_run_2cores.txt"
    cp /tmp/runs/cpu2/samples/step_00001500.png "$OUTDIR/default_run_grid.png" 2>/dev/null
    CUDA_VISIBLE_DEVICES= taskset -c 0,1 python3 benchmarks/train_step.py --steps 20 --rounds 5 --out "$OUTDIR/train_step_cpu2.md" 2>&1 | grep -E "ratio|\| (plain|gandist)"
fi

if [ "$PART" = b ]; then
    python3 benchmarks/engines.py --device cuda --precision bf16 --out "$OUTDIR/engines_h100x1_bf16.json" 2>&1 | grep -v WARN | tail -8
    python3 benchmarks/engines.py --device cuda --precision fp16 --out "$OUTDIR/engines_h100x1_fp16.json" 2>&1 | grep -v WARN | tail -8
    python3 benchmarks/loader.py --workers 4 --device cuda --sizes 32 64 128 --out "$OUTDIR/loader_h100.md" 2>&1 | tail -8
fi

if [ "$PART" = d ]; then
    # ~6-8 min on an H100 with dcgan+mlp (+ the zoo's models once merged: size it to the budget
    # with --models / --steps / --rounds). Checks: ddp_bf16 >= 1.5x plain_fp32 for dcgan and resnet
    # at 32; pipeline device_cache >= 0.95 of memory; biggan 128 bf16 MFU >= 25 %.
    python3 -m gandist bench --device cuda --out "$OUTDIR/bench.json" 2>&1 | grep -v WARN | tail -40
    python3 benchmarks/scaling.py --bench "$OUTDIR/bench.json" | tee "$OUTDIR/scaling.md"
    python3 benchmarks/loader.py --device cuda --workers 0 1 2 4 8 --sizes 32 64 --min-sec 2 --out "$OUTDIR/loader_gpu.md" 2>&1 | tail -14
fi
