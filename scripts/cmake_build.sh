#!/usr/bin/env bash
# Configures, builds and tests the C++ library with a preset of CMakePresets.json (cpu, cuda or
# asan) against the LibTorch inside the active Python's torch:
#   bash scripts/cmake_build.sh [PRESET] [extra cmake configure args...]
# PRESET defaults to cuda when torch has CUDA and a toolkit is found (USE_CUDA=0: cpu), else cpu.
# The build goes to build-cmake/PRESET. A CUDA build of torch's CMake config needs the CUDA
# toolkit (CUDA_HOME, default /usr/local/cuda) and libnvrtc, which pip's torch keeps in its
# nvidia/ wheel folder: both are found here and handed to the preset through the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
preset=${1:-}
shift || true
TORCH_CMAKE_PREFIX=$($python -c 'import torch; print(torch.utils.cmake_prefix_path)')
export TORCH_CMAKE_PREFIX CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} LENET_EXT_NVRTC=${LENET_EXT_NVRTC:-}
torch_cuda=$($python -c 'import torch; print(torch.version.cuda is not None)')
if [ "$torch_cuda" = True ] && [ -z "$LENET_EXT_NVRTC" ]; then
  for found in "$CUDA_HOME"/lib64/libnvrtc.so*; do
    if [ -e "$found" ]; then LENET_EXT_NVRTC=$found && break; fi
  done
  if [ -z "$LENET_EXT_NVRTC" ]; then
    LENET_EXT_NVRTC=$($python - <<'PY'
import glob, os, torch
root = os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia")
found = sorted(glob.glob(os.path.join(root, "**", "libnvrtc.so*"), recursive=True))
print(found[0] if found else "")
PY
)
  fi
fi
if [ -z "$preset" ]; then
  preset=cpu
  if [ "$torch_cuda" = True ] && [ "${USE_CUDA:-1}" != 0 ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then preset=cuda; fi
fi
[ "$preset" = cuda ] && export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
case $preset in cpu | cuda | asan) ;; *) echo "error: PRESET must be cpu, cuda or asan, got '$preset'" >&2; exit 2 ;; esac
cmake --preset "$preset" "$@"
cmake --build --preset "$preset" -j"$(nproc)"
ctest --preset "$preset"
