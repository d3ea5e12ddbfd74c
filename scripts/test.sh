#!/usr/bin/env bash
# The test command (README's second command; .ci/run calls exactly this).
# Sets up .venv with the test dependencies, starts the local Slurm cluster when this machine
# provides one, and runs the whole suite. Tests that need the local Slurm or a root-only tmpfs
# skip with a reason where the service is missing; under CI=true they FAIL instead, so a service
# that did not start can never make CI green by taking its tests away.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
if [ -x scripts/slurm_up.sh ]; then
    bash scripts/slurm_up.sh || echo "test: local Slurm did not start; Slurm tests will skip (and fail under CI=true)" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
