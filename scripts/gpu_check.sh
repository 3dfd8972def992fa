#!/usr/bin/env bash
# The GPU run, one prepared script for a machine with an NVIDIA GPU and no network:
#   1. installs lenet_ext (CPU + CUDA kernels for sm_90 unless TORCH_CUDA_ARCH_LIST says otherwise);
#   2. runs the CUDA tests (every parity test on the GPU, the fused ops' kernels, gradcheck, opcheck,
#      CUDA graphs of a whole training step, the training loop captured against uncaptured,
#      determinism, device errors, the profiler's launch counts);
#   3. runs compute-sanitizer memcheck, racecheck and synccheck over scripts/exercise_kernels.py;
#   4. times every op and LeNet-5 inference and training step (with LENET_EXT_CUDA_KERNELS=v2: the
#      fused ops and the second-generation layer kernels) against torch eager and
#      torch.compile(mode="reduce-overhead") at batch 1, 64 and 1024 (CUDA events, medians), then
#      the op rows at batch 1024 with the first-generation kernels;
#   5. races to 99% MNIST test accuracy (benchmarks/time_to_accuracy.py: ours with the training
#      step in a CUDA graph, torch eager with the same loop), if MNIST is at $MNIST_DIR (default:
#      shared/data/mnist, else gpu-data/mnist: copy the four official files there before the run).
# Results go to $OUT (default ./gpu-results): gpu-check.md, with the logs beside it. Each step has
# its own timeout; the whole script is meant to finish within 6 minutes on an H100 or H200.
# Usage: OUT=/some/dir bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
python=${PYTHON:-python3}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTHONUNBUFFERED=1
# The system compiler: the GPU image sets CXX=/opt/gcc/bin/g++, which links libstdc++ statically
# (setup.py refuses such a build; see BuildExt there). LENET_EXT_CXX/CC choose another.
export CXX=${LENET_EXT_CXX:-g++} CC=${LENET_EXT_CC:-gcc}
report="$out/gpu-check.md"
status=0
start=$(date +%s)
step() { echo "== $(date +%T) (+$(( $(date +%s) - start )) s) $*" | tee -a "$out/steps.log"; }

{
  echo "# lenet_ext GPU check, $(date -u +%Y-%m-%d)"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  $python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  (g++ --version; nvcc --version) 2>&1 | grep -E "^g\+\+|release"
  echo "commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  echo '```'
} > "$report"

step "install"
if ! timeout 240 $python -m pip install --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1; then
  echo "install FAILED (see install.log)" >> "$report"
  tail -40 "$out/install.log"
  exit 1
fi
$python -c 'import lenet_ext; print("backends", lenet_ext.backends())' | tee -a "$report"

step "CUDA tests"
# One pytest per file, so that a crash in one cannot hide the others' results.
{ echo; echo "## CUDA tests"; echo; echo '```'; } >> "$report"
for t in test_cuda test_ops test_model test_errors; do
  sel=(-k cuda); [ $t = test_cuda ] && sel=(); [ $t = test_errors ] && sel=()
  timeout 150 $python -X faulthandler -m pytest -q -p no:cacheprovider -rfs tests/$t.py "${sel[@]}" \
    >> "$out/pytest.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || status=1
  echo "$t: exit $rc, $(tail -n 1 "$out/pytest.log")" >> "$report"
done
echo '```' >> "$report"

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
{ echo; echo "## compute-sanitizer (scripts/exercise_kernels.py, the fused kernels included)"; echo; } >> "$report"
if [ -n "$sanitizer" ]; then
  for tool in memcheck racecheck synccheck; do
    step "compute-sanitizer $tool"
    timeout 90 "$sanitizer" --tool "$tool" --error-exitcode 9 $python scripts/exercise_kernels.py \
      > "$out/sanitizer-$tool.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || status=1
    { echo "- $tool: exit $rc; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK SUMMARY' "$out/sanitizer-$tool.log" | tail -n1)"; } >> "$report"
  done
else
  echo "- compute-sanitizer not found" >> "$report"
  status=1
fi

step "timings"
{ echo; echo "## timings (CUDA events, medians; LeNet5 on the fused ops)"; echo; } >> "$report"
LENET_EXT_CUDA_KERNELS=v2 timeout 150 $python -m benchmarks.report --device cuda --batches 1,64,1024 --rounds 10 \
  --min-round-ms 10 --out "$out" > "$out/bench.log" 2>&1 || status=1
cat "$out"/cuda-*.md >> "$report" 2>/dev/null || tail -n 20 "$out/bench.log" >> "$report"
# The per-op rows again with the first-generation kernels (the default until this run validates
# the second), so the report shows what the second generation moved.
{ echo; echo "## per-op timings, first-generation kernels (LENET_EXT_CUDA_KERNELS unset)"; echo; } >> "$report"
mkdir -p "$out/v1"
timeout 60 $python -m benchmarks.report --device cuda --batches 1024 --rounds 10 --min-round-ms 10 --no-compile \
  --only conv2d avg_pool linear --out "$out/v1" > "$out/bench-v1.log" 2>&1 || status=1
cat "$out"/v1/cuda-*.md >> "$report" 2>/dev/null || tail -n 20 "$out/bench-v1.log" >> "$report"

step "time to 99%"
{ echo; echo "## time to 99%"; echo; } >> "$report"
mnist=${MNIST_DIR:-}
for d in shared/data/mnist gpu-data/mnist; do [ -z "$mnist" ] && [ -d "$d" ] && mnist=$d; done
if [ -n "$mnist" ]; then
  LENET_EXT_CUDA_KERNELS=v2 timeout 120 $python -m benchmarks.time_to_accuracy --data-dir "$mnist" --device cuda \
    --seeds 1,2 > "$out/time-to-99.log" 2>&1 || status=1
  cat "$out/time-to-99.log" >> "$report"
else
  echo "MNIST not found (MNIST_DIR, shared/data/mnist, gpu-data/mnist): not run" >> "$report"
fi

echo "status $status after $(( $(date +%s) - start )) s" >> "$report"
cat "$report"
exit $status
