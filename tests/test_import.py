"""Without its compiled kernels the package must fail to import, loudly, with the rebuild
command, rather than fall back to torch layers."""

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
    assert "pip install --no-build-isolation" in proc.stdout
    assert "lenet_ext._C" in proc.stdout


def test_extension_is_loaded_and_registers_every_op():
    import torch

    import lenet_ext

    assert "cpu" in lenet_ext.backends()
    for op in (
        "conv2d_sigmoid",
        "conv2d_sigmoid_backward",
        "avg_pool2d",
        "avg_pool2d_backward",
        "linear",
        "linear_backward",
    ):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"lenet_ext::{op}", "CPU"), op
