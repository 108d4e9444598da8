#!/usr/bin/env bash
# GPU check of the fused ops, without Node: on a machine with a GPU and a Python whose torch is a CUDA
# build, `bash scripts/gpu-check.sh [gpu_check.py flags]` builds native/ops against that torch
# (torch.utils.cpp_extension), loads it (torch.ops.llmrl.*), checks every op in scripts/gpu_check.py's
# OP_CHECKS on CUDA against unfused float64 PyTorch compositions (values and gradients) and against the
# CPU kernels, then times fused vs unfused on CUDA. Exit status: 0 all matched, 1 a mismatch, 2 no build.
# Env: PYTHON (default python3), TORCH_CUDA_ARCH_LIST, MAX_JOBS, CUDA_HOME. Flags: see gpu_check.py --help
# (--ops kl_penalty, --no-bench, --runs N, --verbose, --build-cuda to compile CUDA with no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "gpu-check: no $PY on PATH; set PYTHON to the interpreter that has PyTorch" >&2
  exit 2
fi
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  echo "gpu-check: $PY cannot import torch: install a CUDA build of PyTorch there, or set PYTHON" >&2
  exit 2
fi
# cpp_extension.load needs ninja; without it gpu_check.py falls back to compiling with c++/nvcc directly.
if ! "$PY" -c 'import ninja' >/dev/null 2>&1 && ! command -v ninja >/dev/null 2>&1; then
  echo "gpu-check: no ninja; trying \`pip install ninja\` (offline: gpu_check.py builds without it)"
  "$PY" -m pip install --quiet --retries 0 --timeout 5 ninja >/dev/null 2>&1 || true
fi
exec "$PY" scripts/gpu_check.py "$@"
