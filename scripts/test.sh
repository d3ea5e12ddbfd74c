#!/usr/bin/env bash
# The test command (README's second command; .ci/run calls exactly this).
# Sets up .venv with the test dependencies, starts the local one-node Slurm and the two-node
# test cluster when this machine allows (root), and runs the whole suite. Tests that need a
# Slurm cluster or a root-only tmpfs skip with a reason where the service is missing; under
# CI=true they FAIL instead, so a service that did not start can never make CI green by taking
# its tests away.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
if [ -x scripts/slurm_up.sh ]; then
    bash scripts/slurm_up.sh || echo "test: local Slurm did not start; Slurm tests will skip (and fail under CI=true)" >&2
fi
# The two-node cluster (namespaces on this machine) for tests/test_slurm_multinode.py, stopped
# again when the tests end, however they end. The host's one-node Slurm above is left running.
if [ "$(id -u)" = 0 ] && bash scripts/slurm_multinode_up.sh; then
    trap 'bash scripts/slurm_multinode_down.sh >/dev/null 2>&1 || echo "test: the two-node cluster did not stop cleanly" >&2' EXIT
else
    echo "test: the two-node Slurm cluster did not start; its tests will skip (and fail under CI=true)" >&2
fi
# Two pytest-xdist workers for CI's two cores: much of the suite waits on spawned ranks and Slurm
# jobs, so one worker leaves a core idle. tests/conftest.py keeps each file on one worker and all
# Slurm files together on one, and gives each worker one torch thread.
.venv/bin/python -m pytest -q -n 2 "$@"
