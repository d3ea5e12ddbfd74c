#!/usr/bin/env bash
# The semi-supervised study on the built-in digits (docs/semisup.md's figures): semisup_study.sh digits.
# Usage: bash benchmarks/semisup_digits.sh WORKDIR [STEPS] [GANDIST_COMMAND...]
exec bash "$(dirname "$0")/semisup_study.sh" digits "$@"
