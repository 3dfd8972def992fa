"""The names that the README, docs/ and the code's comments mention exist: file paths (csrc/...,
lenet_ext/..., a file name such as conv2d_sigmoid_kernels.cu), modules (lenet_ext.serve), and
functions written as calls (`like_this()`). A rename that leaves a stale mention fails here; the
first test plants stale names and shows that the check reports each one."""

import io
import os
import re
import subprocess
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Where the mentions are read: the docs, and every source file (comments and docstrings included).
TEXT_EXTS = (".md", ".py", ".h", ".cpp", ".cu", ".cuh", ".sh", ".txt", ".toml", ".html", ".js", ".json")
# Folders a mentioned path may start with: the repository's own.
TOP = ("csrc", "lenet_ext", "tests", "benchmarks", "scripts", "docs", "cpp_tests", "examples", ".ci")
PATH = re.compile(r"(?<![\w./~-])((?:%s)/[\w./<>*-]*[\w*>])(?![\w{$])" % "|".join(re.escape(t) for t in TOP))
FILE = re.compile(r"(?<![\w./<>*}-])([A-Za-z_][\w-]*\.(?:cu|cuh|cpp|h|py|md|sh|html|js))\b(?![\w/(-])")
CALL = re.compile(r"(?<![\w$])((?:[A-Za-z_]\w*(?:\.|::))*([A-Za-z_]\w*))\(\)")
# In C++ comments and in Markdown's `code`: a snake_case name is one of ours (or EXTERNAL_CALLS').
# (Maths such as sum_k or y_n, one letter after an underscore, is not a name.)
SNAKE = re.compile(r"(?<![\w.:/$<-])([a-z][a-z0-9]*(?:_[a-z0-9]{2,})+)(?![\w./(-])")
MODULE = re.compile(r"(?<![\w/.])lenet_ext(?:\.[A-Za-z_]\w*)+")

# Named but not ours, and not called by our code (so not among its identifiers): headers and files
# of torch, the compilers and other projects, and functions of the libraries that the docs name.
EXTERNAL_FILES = {
    "omp.h",
    "ParallelOpenMP.h",
    "extension.h",
    "torch.h",
    "script.h",
    "cuda_runtime.h",
    "immintrin.h",
    "arm_neon.h",
    "conftest.py",
    "__init__.py",
    "__main__.py",
    "index.html",
    "model.pt2",
    "custom_function.h",
    "gpu-check.md",
    "omp.cpp",  # the OpenMP probe setup.py compiles in a temporary folder
}
# Written by the build, not tracked.
GENERATED = {"lenet_ext/_build_info.py", "_build_info.py", "_build_info"}
EXTERNAL_CALLS = {
    "opcheck",
    "gradcheck",
    "torch.compile",
    "aoti_compile_and_package",
    "aoti_load_package",
    "expf",
    "exp",
    "register_autograd",
    "set_num_threads",
    "cudaDeviceSynchronize",
    "__syncthreads",
    "os.fork",
    "scrollIntoView",
    "seq_cst",
}


def tracked_files():
    # Only in a checkout of this project: a copy of it inside another repository (scripts/install_check.sh
    # copies the tree under build-install/, which the checkout ignores) would list nothing.
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    if top.returncode != 0 or os.path.realpath(top.stdout.strip()) != os.path.realpath(ROOT):
        pytest.skip("not a git checkout of the project")
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.splitlines() if os.path.isfile(os.path.join(ROOT, f))]


def source_text(files):
    """{path: text} of the files where mentions are read (this file excepted: it names stale things)."""
    texts = {}
    for f in files:
        if f.endswith(TEXT_EXTS) and f != "tests/test_docs.py" and not f.startswith("benchmarks/results/"):
            with open(os.path.join(ROOT, f), encoding="utf-8", errors="replace") as fh:
                texts[f] = fh.read()
    return texts


def code_identifiers(texts):
    """Every identifier the code itself uses (Python tokens, C++ outside comments and strings): a
    function that exists is defined or called somewhere here."""
    names = set()
    for f, text in texts.items():
        # definitions anywhere, code held in strings (a subprocess's script) included
        names.update(re.findall(r"\b(?:def|class|function)\s+([A-Za-z_]\w*)", text))
        if f.endswith(".py"):
            try:
                for tok in tokenize.generate_tokens(io.StringIO(text).readline):
                    if tok.type == tokenize.NAME:
                        names.add(tok.string)
                    elif tok.type == tokenize.STRING:  # keys and names the code builds from strings
                        names.update(re.findall(r"[A-Za-z_]\w*", tok.string))
            except (tokenize.TokenError, SyntaxError):
                pass
        elif f.endswith("CMakeLists.txt"):  # CMake's targets and variables, outside comments
            names.update(re.findall(r"[A-Za-z_]\w*", re.sub(r"#[^\n]*", " ", text)))
        elif f.endswith((".sh", ".txt")) or os.path.basename(f) == "run":  # shell functions
            names.update(re.findall(r"^\s*([A-Za-z_]\w*)\s*\(", text, flags=re.M))
        elif f.endswith((".h", ".cpp", ".cu", ".cuh", ".js", ".html")):
            code = re.sub(r"//[^\n]*|/\*.*?\*/", " ", text, flags=re.S)
            names.update(re.findall(r"[A-Za-z_]\w*", code))
    return names


def snake_case_places(f, text):
    """Where a bare snake_case word names code: C++ comments, and Markdown's inline code."""
    if f.endswith((".h", ".cpp", ".cu", ".cuh")):
        return re.findall(r"//([^\n]*)", text)
    if f.endswith(".md"):
        return re.findall(r"`([^`\n]+)`", text)
    return []


def stale_mentions(texts, files, identifiers):
    """[(file, mention)] for each mention of something that does not exist."""
    have = set(files)
    folders = {os.path.dirname(f) for f in files}
    for f in files:
        while f:
            f = os.path.dirname(f)
            folders.add(f)
    basenames = {os.path.basename(f) for f in files}
    stale = []
    for f, text in texts.items():
        for m in PATH.finditer(text):
            path = m.group(1).rstrip(".")
            if any(c in path for c in "<*>"):  # a pattern such as csrc/cpu/<op>.cpp: its folder exists
                path = path.split("<")[0].split("*")[0].rsplit("/", 1)[0]
            if path not in have and path.rstrip("/") not in folders and path not in GENERATED:
                stale.append((f, path))
        for m in FILE.finditer(text):
            name = m.group(1)
            if name not in basenames and name not in EXTERNAL_FILES and name not in GENERATED:
                stale.append((f, name))
        for m in CALL.finditer(text):
            full, last = m.group(1), m.group(2)
            if full in EXTERNAL_CALLS or last in EXTERNAL_CALLS:
                continue
            if last not in identifiers:
                stale.append((f, full + "()"))
        for snippet in snake_case_places(f, text):
            for m in SNAKE.finditer(snippet):
                if m.group(1) not in identifiers and m.group(1) not in EXTERNAL_CALLS:
                    stale.append((f, m.group(1)))
        for m in MODULE.finditer(text):
            if m.group(0) in basenames:  # a file: csrc/lenet_ext.cpp
                continue
            parts = m.group(0).split(".")
            # The longest prefix that is a module or package; what follows must be names in its code.
            k = len(parts)
            while k > 1 and not (
                os.path.isfile(os.path.join(ROOT, *parts[:k]) + ".py")
                or os.path.isdir(os.path.join(ROOT, *parts[:k]))
                or any(x.startswith("/".join(parts[:k]) + ".") and x.endswith((".so", ".pyd")) for x in have)
                or (parts[:k] == ["lenet_ext", "_C"])
            ):
                k -= 1
            if k == 1 and len(parts) > 1 and parts[1] not in identifiers:
                stale.append((f, m.group(0)))
            elif any(p not in identifiers for p in parts[k:]):
                stale.append((f, m.group(0)))
    return sorted(set(stale))


def test_the_check_catches_planted_stale_names():
    files = tracked_files()
    texts = source_text(files)
    identifiers = code_identifiers(texts)
    planted = {
        "docs/planted.md": "See `csrc/cuda/conv2d_sigmoid.cu` and conv_kernels.cuh, `run_the_old_thing()`, "
        "lenet_ext.serve_v1 and lenet_ext/serve.py.",
        "csrc/cpu/planted.h": "// computed by conv_forward_channels() in kernels_impl.h\nint x;",
    }
    found = stale_mentions(planted, files, identifiers)
    assert set(found) == {
        ("docs/planted.md", "csrc/cuda/conv2d_sigmoid.cu"),
        ("docs/planted.md", "run_the_old_thing()"),
        ("docs/planted.md", "lenet_ext.serve_v1"),
        ("docs/planted.md", "lenet_ext/serve.py"),
        ("csrc/cpu/planted.h", "conv_forward_channels()"),
    }, found
    # and names that exist pass
    fine = {"docs/fine.md": "`csrc/cpu/kernels_impl.h`, gemm.h, `lenet5_forward()`, lenet_ext.serve.command"}
    assert stale_mentions(fine, files, identifiers) == []


def test_every_mentioned_name_exists():
    files = tracked_files()
    texts = source_text(files)
    stale = stale_mentions(texts, files, code_identifiers(texts))
    assert not stale, "mentions of names that do not exist:\n" + "\n".join(f"  {f}: {name}" for f, name in stale)
