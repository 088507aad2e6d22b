#!/usr/bin/env bash
# The main job: set up, start every service locally, run self-play on the embedded defaults
# (SmolLM2-135M-Instruct, bundled corpus, configs/demo.yaml) and print the score per step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh pop/smollm2-135m-instruct
# shellcheck disable=SC1091
. "${POP_VENV:-.venv}/bin/activate"
exec python -m cli demo "$@"
