#!/usr/bin/env bash
# The GPU smoke check (never part of CI): on a CUDA machine, the trainer's GPU path measured, then the
# whole loop end to end where vLLM is installed (generator and trainer on the GPU, SmolLM2-135M-Instruct
# served in bf16, 3 steps with hot-swaps, rollbacks), printing step, swap and write times; then the NCCL
# weight sync (POP_TRAINER_WEIGHT_SYNC=nccl) from a trainer to two generator replicas, timed and checked.
#   scripts/gpu-smoke.sh              # sets up the GPU stack first (scripts/setup.sh; needs PyPI)
#   POP_SMOKE_SETUP=0 scripts/gpu-smoke.sh   # use the python on PATH as it is (a machine with no registry)
set -uo pipefail
cd "$(dirname "$0")/.."
if ! nvidia-smi -L >/dev/null 2>&1; then echo "no NVIDIA GPU here: the GPU smoke check needs one" >&2; exit 2; fi
if [ "${POP_SMOKE_SETUP:-1}" != 0 ]; then
  POP_STACK=gpu scripts/setup.sh pop/smollm2-135m-instruct || exit 1
  # shellcheck disable=SC1091
  . "${POP_VENV:-.venv}/bin/activate"
fi
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
status=0
echo "== trainer on the GPU"
"$PY" -m benchmarks.gpu_smoke trainer || status=1
echo "== the loop on the GPU"
if "$PY" -c "import vllm" 2>/dev/null; then
  "$PY" -m benchmarks.gpu_smoke loop || status=1
else
  echo "vLLM is not installed in this Python: the loop part (generator on the GPU, swaps, rollbacks) did not run"
  status=3
fi
echo "== NCCL weight sync: a trainer pushes to two generator replicas"
if ! "$PY" -c "import vllm" 2>/dev/null; then
  echo "vLLM is not installed in this Python: the NCCL weight sync part did not run"
  status=3
elif ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "torch sees no CUDA device: the NCCL weight sync part did not run"
  status=3
else
  "$PY" -m benchmarks.gpu_smoke nccl || status=1
fi
exit $status
