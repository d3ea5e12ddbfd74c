#!/usr/bin/env bash
# The README's GAN -> synthetic data -> classifier path on the built-in digits, each command
# timed. Usage: bash benchmarks/digits_path.sh WORKDIR [GANDIST_COMMAND...]
# (default command: python -m gandist). Used for the figures in docs/classify.md ("Measured on the digits") and the README.
set -euo pipefail
WORK=$(realpath -m "$1"); shift
G=("${@:-python3}")
[ $# -eq 0 ] && G=(python3 -m gandist)
mkdir -p "$WORK" && cd "$WORK"
export GANDIST_CACHE=${GANDIST_CACHE:-$WORK/cache}
t0=$(date +%s)
run() { local s; s=$(date +%s); "${G[@]}" "$@" > "$WORK/$1.log" 2>&1; echo "$(( $(date +%s) - s )) s: gandist $*"; }
run shards make --builtin digits --split train --out data/digits-train
run shards make --builtin digits --split test --out data/digits-test
run train --run-dir runs/digits data.path=data/digits-train log.progress=false
run synth --run-dir runs/digits --per-class 2000 --out data/digits-synth
run classify --train data/digits-train --test data/digits-test --synthetic data/digits-synth \
    --protocol real,cas,lowdata --seeds 3 --out reports/digits
run eval --run-dir runs/digits metrics.classifier=reports/digits/domain_classifier.safetensors
echo "total $(( $(date +%s) - t0 )) s"
