#!/usr/bin/env bash
# One-time set-up, idempotent: a venv with the pinned stack, then the offline models.
#   scripts/setup.sh [MODEL ...]    (default: pop/tiny; add pop/smollm2-135m-instruct for the demo)
#   POP_SETUP_DEV=1 scripts/setup.sh ...   also the test and lint tools, in the same resolve (scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${POP_VENV:-.venv}

if [ -n "${POP_STACK:-}" ]; then stack=$POP_STACK
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then stack=gpu
else stack=cpu; fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"

# The main job installs what the services need; the tests add their tools (pytest, linters, playwright,
# schemathesis) in the same single resolve. A dev install serves both.
extras=""
[ "${POP_SETUP_DEV:-0}" = 1 ] && extras="[dev]"
stamp="$VENV/.pop-$stack-$(cat requirements/"$stack".txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp-dev" ] && { [ -n "$extras" ] || [ ! -f "$stamp" ]; }; then
  echo "== installing the $stack stack${extras:+ and the test tools} into $VENV (a few minutes, once)"
  python -m pip install -q -U pip
  # One resolve for everything, so pip honours every pin at once.
  python -m pip install -q -r "requirements/$stack.txt" -e ".$extras"
  if [ "$stack" = cpu ]; then
    # pip pulls CUDA builds of these: torchvision breaks `import vllm`
    # (operator torchvision::nms does not exist), torchcodec kills the server at start, and
    # triton is unused on CPU. Text models need none of them.
    python -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
  fi
  rm -f "$VENV"/.pop-"$stack"-*
  touch "$stamp${extras:+-dev}"
fi

models=("$@")
[ ${#models[@]} -gt 0 ] || models=(pop/tiny)
for m in "${models[@]}"; do
  python -c "import sys; from shared.modeling import resolve_model; print('model', sys.argv[1], '->', resolve_model(sys.argv[1]))" "$m"
done
