#!/usr/bin/env bash
# `pip install .` as a new user runs it, into a venv that already holds another torch than the one
# pip would pick (torch 2.13.0, the CPU build), from a clean copy of this checkout:
#   1. plain `pip install .` (build isolation on) builds against that torch, and the package
#      imports, runs an op, trains one epoch on the embedded digits, and passes the fast lane;
#   2. after `pip install torch==<other>` on top, `import lenet_ext` fails with one line naming
#      the fix (no undefined symbol, no crash), and that fix works.
#   bash scripts/install_check.sh [WORKDIR]      (default: a temporary folder; CI runs this)
# OTHER_TORCH (default 2.14.1) is the release installed on top in step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
other=${OTHER_TORCH:-2.14.1}
mkdir -p "$work"
export PIP_DISABLE_PIP_VERSION_CHECK=1 USE_CUDA=0

say() { printf '\n== %s\n' "$*"; }
fail() {
  echo "install_check: FAILED: $*" >&2
  exit 1
}

say "a clean copy of the checkout (tracked and new files, no build outputs)"
rm -rf "$work/src" && mkdir -p "$work/src"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$work/src"

say "a venv with torch 2.13.0 (CPU)"
rm -rf "$work/venv"
python3 -m venv "$work/venv"
py=$work/venv/bin/python
"$py" -m pip install -q torch==2.13.0
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

say "pip install . (plain: build isolation on)"
start=$(date +%s)
(cd "$work/src" && "$py" -m pip install -v . > "$work/install.log" 2>&1) || {
  tail -n 30 "$work/install.log"
  fail "pip install . did not succeed"
}
echo "installed in $(($(date +%s) - start)) s"
# The build backend found this venv's torch and built against it (no second torch downloaded).
grep "lenet_ext: building against the installed torch 2.13.0" "$work/install.log" ||
  fail "the build did not use the installed torch"
if grep -qiE "(Collecting|Downloading|Using cached) torch" "$work/install.log"; then
  fail "pip fetched a torch for the build"
fi

say "import, one op, one epoch"
cd "$work"
"$py" - <<'PY' || fail "the installed package does not work"
import torch, lenet_ext
from lenet_ext import ops
x, w = torch.rand(2, 1, 8, 8), torch.rand(3, 1, 3, 3)
ref = torch.sigmoid(torch.nn.functional.conv2d(x, w))
assert torch.allclose(ops.conv2d_sigmoid(x, w), ref, atol=1e-6)
print("lenet_ext", lenet_ext.__version__, "on torch", torch.__version__, "backends", lenet_ext.backends())
PY
rm -rf "$work/run"
LENET_EXT_DATA="$work/cache" LENET_EXT_MIRRORS=http://127.0.0.1:9/ \
  "$py" -m lenet_ext.train --epochs 1 --no-plots --out "$work/run" || fail "train --epochs 1 failed"

say "the fast lane on torch 2.13.0, the oldest release pyproject admits"
"$py" -m pip install -q pytest hypothesis
(cd "$work" && "$py" -m pytest -q -p no:cacheprovider -m "not slow" src/tests) || fail "the fast lane failed on torch 2.13.0"

say "torch $other installed on top: one line naming the fix"
"$py" -m pip install -q "torch==$other"
set +e
err=$("$py" -c 'import lenet_ext' 2>&1)
code=$?
set -e
echo "$err" | tail -n 1
[ "$code" -ne 0 ] || fail "import lenet_ext succeeded against a torch it was not built for"
echo "$err" | grep -q "Traceback" || true
last=$(echo "$err" | tail -n 1)
case "$last" in
  *"built for torch 2.13.0"*"pip install --no-deps --force-reinstall"*) ;;
  *) fail "the error does not name the build and the fix: $last" ;;
esac
echo "$err" | grep -qi "undefined symbol" && fail "undefined symbol in the error"

say "the fix it names"
fix=${last##*: }
echo "$fix"
(cd "$work" && read -r -a words <<< "$fix" && "$py" -m "${words[@]}" -q) || fail "the named fix failed"
"$py" -c 'import torch, lenet_ext; print("lenet_ext on torch", torch.__version__, "ok")' || fail "still broken after the fix"
echo "install_check: passed"
