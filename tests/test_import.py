"""Without its compiled kernels the package must fail to import, loudly, with the rebuild
command, rather than fall back to torch layers."""

import os
import re
import subprocess
import sys
import textwrap


def test_import_fails_loudly_without_extension():
    script = textwrap.dedent("""
        import importlib.abc, sys

        class HideExtension(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "lenet_ext._C":
                    raise ImportError("simulated: lenet_ext._C is missing")
                return None

        sys.meta_path.insert(0, HideExtension())
        try:
            import lenet_ext
        except ImportError as exc:
            print("IMPORT-ERROR:", exc)
            sys.exit(3)
        print("IMPORTED", lenet_ext.LeNet5)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "pip install --no-deps" in proc.stdout
    assert "lenet_ext._C" in proc.stdout
    assert len(proc.stdout.strip().splitlines()) == 1  # one line


def test_import_refuses_a_build_for_another_torch():
    """Kernels compiled against another torch are not loaded (their symbols would not match, or
    worse): one line names both versions and the command that rebuilds them."""
    script = textwrap.dedent("""
        import sys, types
        fake = types.ModuleType("lenet_ext._build_info")
        fake.TORCH_VERSION, fake.TORCH_CUDA, fake.SOURCE = "2.0.0+cpu", None, "/nowhere"
        sys.modules["lenet_ext._build_info"] = fake
        try:
            import lenet_ext
        except ImportError as exc:
            print("IMPORT-ERROR:", exc)
            print("loaded _C" if "lenet_ext._C" in sys.modules else "did not load _C")
            sys.exit(3)
        print("IMPORTED")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    error, loaded = proc.stdout.strip().splitlines()
    assert "built for torch 2.0.0+cpu" in error and "pip install --no-deps --force-reinstall" in error
    assert loaded == "did not load _C"


def schema_names():
    """The op names csrc/lenet_ext.cpp declares (m.def("name(...")."""
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc", "lenet_ext.cpp")
    with open(src, encoding="utf-8") as f:
        names = re.findall(r'm\.def\(\s*"(\w+)\(', f.read())
    assert len(names) >= 10, names  # the parse found the schemas
    return names


def test_extension_is_loaded_and_registers_every_op():
    import torch

    import lenet_ext

    assert "cpu" in lenet_ext.backends()
    declared = schema_names()
    registered = sorted(n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("lenet_ext::"))
    assert registered == sorted(declared)
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    keys = ["CPU", "Meta"] + (["CUDA"] if "cuda" in lenet_ext.backends() else [])
    for op in declared:
        for key in keys:
            assert has(f"lenet_ext::{op}", key), (op, key)
        # A forward op with a backward op has its autograd in C++; a backward op, and the
        # inference-only lenet5_forward, has none (autograd refuses to differentiate through it).
        backward = op.replace("_forward", "_backward") if op.endswith("_forward") else op + "_backward"
        differentiable = backward in declared and backward != op
        assert has(f"lenet_ext::{op}", "Autograd") == differentiable, op
    assert {op for op in declared if has(f"lenet_ext::{op}", "Autograd")} == {
        "conv2d_sigmoid",
        "conv2d_sigmoid_pool",
        "avg_pool2d",
        "linear",
        "lenet5_train_forward",
    }
