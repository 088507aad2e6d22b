#!/usr/bin/env bash
# The tests: set up (the stack with the test tools, the tiny plumbing model, SmolLM2 for the learning
# check, the Debian tools the tests drive), then lint,
# type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
POP_SETUP_DEV=1 scripts/setup.sh pop/tiny pop/smollm2-135m-instruct
scripts/test-tools.sh
# shellcheck disable=SC1091
. "${POP_VENV:-.venv}/bin/activate"
ruff check .
ruff format --check .
mypy shared services cli benchmarks
exec python -m pytest "$@"
