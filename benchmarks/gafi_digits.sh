#!/usr/bin/env bash
# GaFi-style filtering of synthetic data on the built-in digits: CAS (a classifier trained on
# synthetic images only, tested on real ones) with no filter, with the fixed default
# --min-confidence 0.9, and with the threshold chosen on the validation split
# (--min-confidence auto --val). Splits: the GAN, the domain (filter) classifier and every real
# baseline train on `fit`; every choice (threshold, classifier weights) is made on `val`; `test`
# is read only for the reported figures.
# Usage: bash benchmarks/gafi_digits.sh WORKDIR [GAN_STEPS] [GANDIST_COMMAND...]
set -euo pipefail
WORK=$(realpath -m "$1"); shift
STEPS=${1:-1000}; [ $# -gt 0 ] && shift
G=("$@"); [ $# -eq 0 ] && G=(python3 -m gandist)
read -r -a GAN_SEEDS <<< "${GAFI_GAN_SEEDS:-0 1}"  # GAN seeds, e.g. GAFI_GAN_SEEDS="0" for one
mkdir -p "$WORK" && cd "$WORK"
export GANDIST_CACHE=${GANDIST_CACHE:-$WORK/cache}
t0=$(date +%s)
run() {
  local s log rc=0; s=$(date +%s); log="$WORK/log_$(date +%s%N).txt"
  "${G[@]}" "$@" > "$log" 2>&1 || rc=$?
  echo "$(( $(date +%s) - s )) s: gandist $*$([ $rc -eq 0 ] || echo "  -> exit $rc: $(tail -1 "$log")")"
  return $rc
}
for split in fit val test; do
  [ -f data/digits-$split/manifest.json ] || run shards make --builtin digits --split $split --out data/digits-$split
done
SPLITS=(--train data/digits-fit --val data/digits-val --test data/digits-test)
# Real-data reference (CAS/real's denominator) and the domain classifier the filter uses.
[ -f reports/real/classify_report.json ] || run classify "${SPLITS[@]}" --protocol real --seeds 3 --out reports/real
for s in "${GAN_SEEDS[@]}"; do
  [ -d runs/gan_s$s/ckpt/step_$(printf %08d "$STEPS") ] || run train --run-dir runs/gan_s$s data.path=data/digits-fit train.steps="$STEPS" train.seed="$s" log.progress=false \
      log.sample_every_steps=0 checkpoint.every_steps="$STEPS"
  [ -f data/synth_s${s}_nofilter/manifest.json ] || run synth --run-dir runs/gan_s$s --per-class 200 --out data/synth_s${s}_nofilter --no-progress
  # The fixed threshold may fail to fill a class within synth's 50 rounds (exit 2): recorded, not fatal.
  [ -f data/synth_s${s}_0.9/manifest.json ] || run synth --run-dir runs/gan_s$s --per-class 200 --out data/synth_s${s}_0.9 --no-progress \
      --filter-classifier reports/real/domain_classifier.safetensors --min-confidence 0.9 || echo "    (failed: see the log)"
  [ -f data/synth_s${s}_auto/manifest.json ] || run synth --run-dir runs/gan_s$s --per-class 200 --out data/synth_s${s}_auto --no-progress \
      --filter-classifier reports/real/domain_classifier.safetensors --min-confidence auto --val data/digits-val --tune-seeds 2
  for v in nofilter 0.9 auto; do
    [ -f data/synth_s${s}_$v/manifest.json ] || continue
    [ -f reports/cas_s${s}_$v/classify_report.json ] || run classify "${SPLITS[@]}" --synthetic data/synth_s${s}_$v --protocol cas --seeds 3 --out reports/cas_s${s}_$v
  done
done
echo "total $(( $(date +%s) - t0 )) s"
