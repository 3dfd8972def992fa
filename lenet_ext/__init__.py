"""lenet_ext: LeNet-5 on MNIST with our own C++/CUDA kernels as PyTorch custom ops.

import torch, lenet_ext
from lenet_ext import ops
model = lenet_ext.LeNet5(impl="ext")    # our kernels
ref = lenet_ext.LeNet5(impl="torch")    # the same network from torch.nn layers
"""

import os
import sys

if sys.argv[:1] == ["-m"]:  # being imported by `python -m lenet_ext.<tool>`: no traceback on Ctrl-C
    from .interrupts import quiet_interrupts_at_startup

    quiet_interrupts_at_startup()

import torch  # noqa: E402,F401  (first: the compiled extension links against libtorch)


def _rebuild_command(source) -> str:
    """The command that rebuilds the kernels for the torch installed now (leaving torch as it is)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if source and os.path.isfile(os.path.join(source, "setup.py")):
        editable = os.path.abspath(source) == here
        return f"pip install --no-deps {'-e ' if editable else '--force-reinstall '}{source}"
    return "pip install --no-deps --force-reinstall <the lenet_ext source folder>"


try:
    from . import _build_info
except ImportError:  # built by other means (CMake, an old build): nothing to compare
    _build_info = None  # type: ignore[assignment]
if _build_info is not None and _build_info.TORCH_VERSION != torch.__version__:
    # Loading a module built against another torch ends in undefined symbols at best.
    raise ImportError(
        f"lenet_ext: its kernels were built for torch {_build_info.TORCH_VERSION}, but this is torch "
        f"{torch.__version__}; rebuild them for it: {_rebuild_command(_build_info.SOURCE)}"
    )
try:
    from . import _C  # type: ignore[attr-defined]  # noqa: F401  (loading it registers the lenet_ext::* ops)
except ImportError as exc:  # never fall back to torch layers silently
    reason = " ".join(str(exc).split())
    raise ImportError(
        f"lenet_ext: the compiled kernels (lenet_ext._C) could not be loaded ({reason}); build them for "
        f"torch {torch.__version__}: {_rebuild_command(getattr(_build_info, 'SOURCE', None))}"
    ) from exc

CUDA_KERNELS = ("v1", "v2")
if os.environ.get("LENET_EXT_CUDA_KERNELS", "v1") not in CUDA_KERNELS:
    raise ImportError(
        f"lenet_ext: LENET_EXT_CUDA_KERNELS must be v1 or v2, got {os.environ['LENET_EXT_CUDA_KERNELS']!r}"
    )

from . import ops  # noqa: E402
from .models import LeNet5  # noqa: E402

__version__ = "0.1.0"


def backends():
    """The devices our kernels were built for, e.g. ["cpu"] or ["cpu", "cuda"]."""
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return [name for name, key in (("cpu", "CPU"), ("cuda", "CUDA")) if has("lenet_ext::conv2d_sigmoid", key)]


def cuda_kernels(generation=None):
    """The CUDA kernel generation the ops run in this process, "v1" or "v2"; with an argument,
    switches to it first. v1: the first-generation per-op kernels, LeNet5 layer by layer on CUDA.
    v2: the second-generation per-op kernels (tiled products, channel groups, chunked weight
    gradients) and LeNet5's fused ops (the whole network in one launch for inference, one op for
    training). v1 is the default until a GPU run has validated v2; LENET_EXT_CUDA_KERNELS=v2 starts a
    process on v2. The setting lives in the compiled library (one switch for C++ and Python)."""
    if generation is not None:
        if generation not in CUDA_KERNELS:
            raise ValueError(f"cuda_kernels: generation must be one of {CUDA_KERNELS}, got {generation!r}")
        _C.set_cuda_kernels(generation)
    return _C.cuda_kernels()


def cpu_isa():
    """The instruction sets of the CPU kernels in this process: "avx2+avx512" (the default on a
    CPU with AVX-512 and VBMI2: the AVX-512 fused forward, measured faster there, beside the AVX2
    training kernels), "avx2" (AVX2 + FMA, the default on other CPUs that have both), "avx512"
    (every kernel AVX-512, when asked for) or "base" (the build's baseline, SSE2 on x86-64, NEON
    on arm64). Chosen once per process, at the first op; LENET_EXT_CPU_ISA=base|avx2|avx512 asks
    for one set for every kernel (falling back to what the CPU has). cpu_isas() names each
    kernel's."""
    return _C.cpu_isa()


def cpu_isas():
    """{kernel: instruction set} for the CPU kernels (the table in csrc/cpu/kernels.h): which set
    each one runs in this process (see cpu_isa())."""
    return _C.cpu_isas()


__all__ = ["LeNet5", "ops", "backends", "cpu_isa", "cpu_isas", "cuda_kernels", "__version__"]
