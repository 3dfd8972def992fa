#!/usr/bin/env bash
# Configures, builds and tests the C++ library with CMake against the LibTorch inside the
# active Python's torch: `bash scripts/cmake_build.sh [BUILD_DIR] [extra cmake args...]`.
# With a CUDA torch and toolkit it builds the CUDA kernels too (USE_CUDA=0 to skip them).
# LENET_EXT_ASAN=1 builds under AddressSanitizer. With a CUDA build of torch, LibTorch's
# CMake config needs the CUDA toolkit (CUDA_HOME, default /usr/local/cuda) and libnvrtc,
# which pip's torch keeps in its nvidia/ wheel folder: both are passed in here.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-cmake}
shift || true
python=${PYTHON:-python}
args=(-DCMAKE_PREFIX_PATH="$($python -c 'import torch; print(torch.utils.cmake_prefix_path)')")
if [ "$($python -c 'import torch; print(torch.version.cuda is not None)')" = True ]; then
  cuda_home=${CUDA_HOME:-/usr/local/cuda}
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  args+=(-DCUDA_TOOLKIT_ROOT_DIR="$cuda_home" -DCMAKE_CUDA_COMPILER="$cuda_home/bin/nvcc")
  nvrtc=$(ls "$cuda_home"/lib64/libnvrtc.so* 2>/dev/null | head -n1 || true)
  if [ -z "$nvrtc" ]; then
    nvrtc=$($python - <<'PY'
import glob, os, torch
root = os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia")
found = sorted(glob.glob(os.path.join(root, "**", "libnvrtc.so*"), recursive=True))
print(found[0] if found else "")
PY
)
  fi
  [ -n "$nvrtc" ] && args+=(-DCUDA_nvrtc_LIBRARY="$nvrtc")
  # Our CUDA kernels too, unless USE_CUDA=0.
  if [ "${USE_CUDA:-1}" != 0 ] && [ -x "$cuda_home/bin/nvcc" ]; then with_cuda=ON; fi
fi
args+=(-DLENET_EXT_WITH_CUDA="${with_cuda:-OFF}")  # explicit, so a cached value never lingers
[ "${LENET_EXT_ASAN:-0}" = 1 ] && args+=(-DLENET_EXT_ASAN=ON -DCMAKE_BUILD_TYPE=Debug)
cmake -S . -B "$build" "${args[@]}" "$@"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure
