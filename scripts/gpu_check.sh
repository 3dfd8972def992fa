#!/usr/bin/env bash
# The GPU run: one prepared script for a machine with an NVIDIA GPU and no network, from a bare
# checkout, inside a budget it enforces itself (GPU_CHECK_BUDGET_S, default 300 s):
#   prerequisites  python with torch and CUDA, nvcc, a C++ compiler, ninja, compute-sanitizer
#   build          pip install --no-deps --no-build-isolation -e . for sm_90 (TORCH_CUDA_ARCH_LIST)
#   tests          the CUDA tests in one pytest process (parity with torch and with our CPU kernels,
#                  both kernel generations, gradcheck, opcheck, CUDA graphs, determinism, errors)
#   sanitizers     compute-sanitizer memcheck, racecheck and synccheck side by side over
#                  scripts/exercise_kernels.py, float32, kernel generations v1 and v2
#   timings        benchmarks.report on CUDA at batch 1, 64 and 1024 (torch.compile columns at 1
#                  and 64 only), LeNet5 on the v2 kernels
#   time to 99%    benchmarks.time_to_accuracy, if MNIST is at $MNIST_DIR (or shared/data/mnist,
#                  gpu-data/mnist)
# Each stage has a share of the budget, printed before it starts; a stage gets its share or what
# is left, whichever is less, and is skipped (and says so) when too little is left. The report,
# $OUT/gpu-check.md (OUT defaults to ./gpu-results), is rewritten after every stage, so whatever a
# timeout cuts off, what ran is in it; the logs lie beside it.
# Usage: OUT=/some/dir [GPU_CHECK_BUDGET_S=300] bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-gpu-results}
mkdir -p "$out"
python=${PYTHON:-python3}
budget=${GPU_CHECK_BUDGET_S:-300}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTHONUNBUFFERED=1
# The system compiler: the GPU image sets CXX=/opt/gcc/bin/g++, which links libstdc++ statically
# (setup.py refuses such a build; see BuildExt there). LENET_EXT_CXX/CC choose another.
export CXX=${LENET_EXT_CXX:-g++} CC=${LENET_EXT_CC:-gcc}
report="$out/gpu-check.md"
status=0
t0=$SECONDS

# Shares of the budget, in seconds out of 300 (scaled to GPU_CHECK_BUDGET_S).
declare -A share=([prerequisites]=10 [build]=110 [tests]=70 [sanitizers]=50 [timings]=45 [time-to-99]=15)
left() { echo $(( budget - (SECONDS - t0) )); }
# stage NAME MIN: prints the stage's share; sets $limit (seconds it may take), or returns 1 when
# fewer than MIN seconds are left (the stage is skipped, and the report says so).
stage() {
  local name=$1 min=$2 want=$(( share[$1] * budget / 300 )) rest
  rest=$(left)
  limit=$(( want < rest ? want : rest ))
  echo "== +$(( SECONDS - t0 )) s: $name, share ${want} s of ${budget} s, ${rest} s left" | tee -a "$out/steps.log"
  if (( limit < min )); then
    note "- $name: skipped, ${rest} s of the budget left (needs ${min} s)"
    status=1
    return 1
  fi
}
note() { echo "$*" >> "$report"; sync "$report" 2>/dev/null || true; }

{
  echo "# lenet_ext GPU check, $(date -u +%Y-%m-%d)"
  echo
  echo "commit ${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}, budget ${budget} s"
  echo
} > "$report"

# ---------------------------------------------------------------------------- prerequisites
stage prerequisites 2
missing=()
$python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
  missing+=("torch with a visible CUDA GPU ($python -c 'import torch; print(torch.cuda.is_available())' says no)")
nvcc=$(command -v nvcc || ls "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" 2>/dev/null || true)
[ -n "$nvcc" ] || missing+=("nvcc (set CUDA_HOME to the CUDA toolkit)")
command -v "$CXX" > /dev/null || missing+=("the C++ compiler $CXX (set LENET_EXT_CXX)")
{ command -v ninja > /dev/null || "$python" -c 'import ninja' 2> /dev/null; } ||
  missing+=("ninja (pip install ninja): without it the build compiles one file at a time")
sanitizer=$(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" 2>/dev/null || true)
{
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1
  [ -n "$nvcc" ] && "$nvcc" --version | grep release
  "$CXX" --version 2>&1 | head -n 1
  echo '```'
} >> "$report"
if (( ${#missing[@]} )); then
  for m in "${missing[@]}"; do note "- prerequisite missing: $m"; echo "error: prerequisite missing: $m" >&2; done
  exit 1
fi
[ -n "$sanitizer" ] || note "- prerequisite missing: compute-sanitizer (the CUDA toolkit's bin/): the sanitizer stage will not run"

# ---------------------------------------------------------------------------- build
if stage build 30; then
  b0=$SECONDS
  if timeout "$limit" "$python" -m pip install --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1; then
    note "- build: ok in $(( SECONDS - b0 )) s for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST; $("$python" -c \
      'import lenet_ext; print("backends", lenet_ext.backends(), "kernels", lenet_ext.cuda_kernels())' 2>&1)"
  else
    note "- build: FAILED or out of time after $(( SECONDS - b0 )) s (install.log):"
    { echo '```'; tail -n 30 "$out/install.log"; echo '```'; } >> "$report"
    cat "$report"
    exit 1
  fi
else
  cat "$report"
  exit 1
fi

# ---------------------------------------------------------------------------- tests
if stage tests 20; then
  # One process: test_cuda and test_errors whole, the CUDA cases of test_ops and test_model.
  timeout "$limit" "$python" -X faulthandler -m pytest -q -p no:cacheprovider -rfEs -o faulthandler_timeout=60 \
    tests/test_cuda.py tests/test_errors.py tests/test_ops.py tests/test_model.py -k "cuda or test_errors" \
    > "$out/pytest.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || status=1
  note "- CUDA tests: exit $rc$([ $rc -eq 124 ] && echo ' (out of time)'): $(tail -n 1 "$out/pytest.log")"
  grep -E "^(FAILED|ERROR)" "$out/pytest.log" | head -n 20 | sed 's/^/  - /' >> "$report"
fi

# ---------------------------------------------------------------------------- sanitizers
if [ -n "$sanitizer" ] && stage sanitizers 15; then
  pids=()
  for tool in memcheck racecheck synccheck; do
    timeout "$limit" "$sanitizer" --tool "$tool" --error-exitcode 9 \
      "$python" scripts/exercise_kernels.py --dtypes float32 --generations v1,v2 > "$out/sanitizer-$tool.log" 2>&1 &
    pids+=($!)
  done
  for i in 0 1 2; do
    tool=$(echo memcheck racecheck synccheck | cut -d' ' -f$((i + 1)))
    wait "${pids[$i]}"
    rc=$?
    [ $rc -eq 0 ] || status=1
    note "- compute-sanitizer $tool (float32, v1 and v2): exit $rc$([ $rc -eq 124 ] && echo ' (out of time)'); $(grep -E \
      'ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK SUMMARY' "$out/sanitizer-$tool.log" | tail -n 1)"
  done
elif [ -z "$sanitizer" ]; then
  status=1
fi

# ---------------------------------------------------------------------------- timings
if stage timings 20; then
  mkdir -p "$out/bench"
  LENET_EXT_CUDA_KERNELS=v2 timeout "$limit" "$python" -m benchmarks.report --device cuda --batches 1,64,1024 \
    --compile-batches 1,64 --rounds 7 --min-round-ms 5 --out "$out/bench" > "$out/bench.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || status=1
  note "- timings: exit $rc$([ $rc -eq 124 ] && echo ' (out of time: the rows measured so far follow)')"
  { echo; cat "$out"/bench/cuda-*.md 2>/dev/null || tail -n 20 "$out/bench.log"; echo; } >> "$report"
fi

# ---------------------------------------------------------------------------- time to 99%
mnist=${MNIST_DIR:-}
for d in shared/data/mnist gpu-data/mnist; do [ -z "$mnist" ] && [ -d "$d" ] && mnist=$d; done
if [ -z "$mnist" ]; then
  note "- time to 99%: MNIST not found (MNIST_DIR, shared/data/mnist, gpu-data/mnist): not run"
elif stage time-to-99 10; then
  LENET_EXT_CUDA_KERNELS=v2 timeout "$limit" "$python" -m benchmarks.time_to_accuracy --data-dir "$mnist" \
    --device cuda --seeds 1 > "$out/time-to-99.log" 2>&1
  rc=$?
  note "- time to 99%: exit $rc"
  { echo '```'; tail -n 15 "$out/time-to-99.log"; echo '```'; } >> "$report"
fi

note ""
note "status $status after $(( SECONDS - t0 )) s of ${budget} s"
cat "$report"
exit $status
