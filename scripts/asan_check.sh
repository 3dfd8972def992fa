#!/usr/bin/env bash
# Builds the kernels under AddressSanitizer and runs the op tests under it, twice:
#   1. the C++ ctest executable (the asan preset of CMakePresets.json), in build-cmake/asan/;
#   2. the Python op and bad-input tests against an ASan build of lenet_ext._C, with
#      libasan preloaded into Python (leak checking off: CPython and torch keep
#      allocations alive on purpose). libstdc++ is preloaded with it so that ASan's
#      __cxa_throw interceptor finds the real one: every torch error is a C++ exception.
# The normal build is restored at the end. Usage: bash scripts/asan_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}

bash scripts/cmake_build.sh asan

preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)"
LENET_EXT_ASAN=1 USE_CUDA=0 $python setup.py build_ext --inplace --build-temp build-cmake/asan-py >/dev/null
status=0
LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  $python -m pytest -q -p no:cacheprovider tests/test_ops.py tests/test_errors.py || status=$?
$python setup.py build_ext --inplace >/dev/null  # back to the optimised build
exit $status
