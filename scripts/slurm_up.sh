#!/usr/bin/env bash
# Start the machine's local one-node Slurm (if it has one) so tests/test_slurm_*.py can run
# against a real controller. .ci/run calls this before pytest:
#
#     bash scripts/slurm_up.sh || echo "warning: local Slurm did not start; Slurm tests will skip"
#
# Does nothing (exit 0) when not root or when no slurm-local/up.sh is found at
# /work/shared/slurm-local/up.sh or ../shared/slurm-local/up.sh (relative to the repository);
# otherwise exits with up.sh's status. up.sh is idempotent: a running cluster is left as is.
# The Slurm tests skip with a reason when `sinfo` is missing or gets no answer.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" != 0 ]; then
  echo "slurm_up: not root: not starting the local Slurm (Slurm tests skip unless one runs)" >&2
  exit 0
fi
for up in /work/shared/slurm-local/up.sh "$REPO/../shared/slurm-local/up.sh"; do
  if [ -f "$up" ]; then
    echo "slurm_up: starting local Slurm with $up" >&2
    # up.sh logs to stderr; keep CI output short unless it fails.
    if out="$(bash "$up" 2>&1)"; then
      sinfo -h -o 'slurm_up: partition %P, %D node(s) %T' >&2 || true
      exit 0
    fi
    echo "$out" | tail -20 >&2
    exit 1
  fi
done
echo "slurm_up: no slurm-local/up.sh found: Slurm tests will skip" >&2
