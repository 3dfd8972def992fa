#!/usr/bin/env bash
# The short GPU run (at most 2 minutes on an H100/H200 from a bare checkout): build for sm_90, the
# parity tests (CUDA against torch and against our CPU kernels, both kernel generations) and the
# CUDA-graph capture tests, then the headline timings (LeNet-5 inference and training step at
# batch 64 and 1024, v2 kernels, no torch.compile). For the whole proof, scripts/gpu_check.sh.
# Results: $OUT/gpu-quick.md (OUT defaults to ./gpu-results), rewritten after every stage.
# Usage: OUT=/some/dir bash scripts/gpu_quick.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-gpu-results}
mkdir -p "$out"
python=${PYTHON:-python3}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTHONUNBUFFERED=1
export CXX=${LENET_EXT_CXX:-g++} CC=${LENET_EXT_CC:-gcc}
report="$out/gpu-quick.md"
status=0
t0=$SECONDS
note() { echo "$*" >> "$report"; }
echo "# lenet_ext quick GPU check, $(date -u +%Y-%m-%d), commit ${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}" > "$report"

echo "== build"
if ! timeout 70 "$python" -m pip install --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1; then
  note "- build: FAILED or over 70 s (install.log)"
  tail -n 30 "$out/install.log"
  exit 1
fi
note "- build: ok in $(( SECONDS - t0 )) s"

echo "== parity and graph-capture tests"
timeout 35 "$python" -m pytest -q -p no:cacheprovider -rfE tests/test_cuda.py \
  -k "matches or graph or capture" > "$out/pytest-quick.log" 2>&1
rc=$?
[ $rc -eq 0 ] || status=1
note "- parity and graph tests: exit $rc: $(tail -n 1 "$out/pytest-quick.log")"

echo "== headline timings"
mkdir -p "$out/bench-quick"
LENET_EXT_CUDA_KERNELS=v2 timeout 25 "$python" -m benchmarks.report --device cuda --batches 64,1024 --no-compile \
  --only LeNet-5 --rounds 5 --min-round-ms 5 --out "$out/bench-quick" > "$out/bench-quick.log" 2>&1 || status=1
cat "$out"/bench-quick/cuda-*.md >> "$report" 2>/dev/null || tail -n 10 "$out/bench-quick.log" >> "$report"
note "status $status after $(( SECONDS - t0 )) s"
cat "$report"
exit $status
