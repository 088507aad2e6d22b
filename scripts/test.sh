#!/usr/bin/env bash
# The tests: set up (the tiny plumbing model, and SmolLM2 for the learning check), then lint,
# type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh pop/tiny pop/smollm2-135m-instruct
# shellcheck disable=SC1091
. "${POP_VENV:-.venv}/bin/activate"
ruff check .
ruff format --check .
mypy shared services cli benchmarks
exec python -m pytest "$@"
