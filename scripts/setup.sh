#!/usr/bin/env bash
# One-time set-up, idempotent: a venv with the pinned stack, then the offline models.
#   scripts/setup.sh [MODEL ...]    (default: pop/tiny; add pop/smollm2-135m-instruct for the demo)
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

stamp="$VENV/.pop-$stack-$(cat requirements/"$stack".txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "== installing the $stack stack into $VENV (a few minutes, once)"
  python -m pip install -q -U pip
  # One resolve for everything, so pip honours every pin at once.
  python -m pip install -q -r "requirements/$stack.txt" -e ".[dev]"
  if [ "$stack" = cpu ]; then
    # pip pulls CUDA builds of these: torchvision breaks `import vllm`
    # (operator torchvision::nms does not exist), torchcodec kills the server at start, and
    # triton is unused on CPU. Text models need none of them.
    python -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
  fi
  rm -f "$VENV"/.pop-"$stack"-*
  touch "$stamp"
fi

# Test tools from Debian: chromium for the dashboard's browser tests (playwright downloads no browser
# of its own), docker-compose to resolve the compose file offline (no Docker engine needed), wrk.
debs=()
command -v chromium >/dev/null 2>&1 || debs+=(chromium fonts-dejavu-core)
command -v docker-compose >/dev/null 2>&1 || debs+=(docker-compose)
command -v wrk >/dev/null 2>&1 || debs+=(wrk)  # the gateway's load test
if [ ${#debs[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then as_root=(env)
  elif sudo -n true 2>/dev/null; then as_root=(sudo -n env)
  else as_root=(); fi
  if [ ${#as_root[@]} -gt 0 ]; then
    echo "== installing ${debs[*]} (Debian) for the tests"
    { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${debs[@]}"; } >/dev/null ||
      echo "== could not install ${debs[*]}: the tests that need them will skip (or fail under CI)" >&2
  else
    echo "== ${debs[*]} missing and this user cannot apt-get: tests that need them skip (or fail under CI)" >&2
  fi
fi

models=("$@")
[ ${#models[@]} -gt 0 ] || models=(pop/tiny)
for m in "${models[@]}"; do
  python -c "import sys; from shared.modeling import resolve_model; print('model', sys.argv[1], '->', resolve_model(sys.argv[1]))" "$m"
done
