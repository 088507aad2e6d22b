#!/usr/bin/env bash
# The tests: set up (tiny model only), then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh pop/tiny
# shellcheck disable=SC1091
. "${POP_VENV:-.venv}/bin/activate"
ruff check .
ruff format --check .
mypy shared services cli
exec python -m pytest "$@"
