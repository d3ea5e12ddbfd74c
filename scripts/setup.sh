#!/usr/bin/env bash
# Create .venv (if needed) and install gandist into it. Usage: bash scripts/setup.sh [--dev]
#   --dev   also install the test dependencies (pytest, ...) and the docs site's (mkdocs)
# torch is installed first, on its own: a plain "torch" requirement resolved by pip together
# with everything else can pull a multi-GB CUDA build onto a CPU-only machine. An already
# installed torch (e.g. the CUDA build a GPU user chose) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${GANDIST_VENV:-.venv}
TORCH_SPEC=${GANDIST_TORCH_SPEC:-torch==2.13.0}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "setup: installing $TORCH_SPEC" >&2
    "${PIP[@]}" "$TORCH_SPEC"
fi
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev,docs]"
echo "setup: installing gandist$extra and its dependencies into $VENV" >&2
"${PIP[@]}" -e ".$extra"
