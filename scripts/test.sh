#!/usr/bin/env bash
# The test command (README's second command; .ci/run calls exactly this).
# Sets up .venv with the test dependencies, starts the local Slurm cluster when this machine
# provides one (tests that need it skip with a reason otherwise), and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
if [ -x scripts/slurm_up.sh ]; then
    bash scripts/slurm_up.sh || echo "test: local Slurm did not start; Slurm tests will skip" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
