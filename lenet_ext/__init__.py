"""lenet_ext: LeNet-5 on MNIST with our own C++/CUDA kernels as PyTorch custom ops.

    import torch, lenet_ext
    from lenet_ext import ops
    model = lenet_ext.LeNet5(impl="ext")    # our kernels
    ref = lenet_ext.LeNet5(impl="torch")    # the same network from torch.nn layers
"""
import sys

if sys.argv[:1] == ["-m"]:  # being imported by `python -m lenet_ext.<tool>`: no traceback on Ctrl-C
    from .cli import quiet_interrupts_at_startup
    quiet_interrupts_at_startup()

import torch  # noqa: E402,F401  (first: the compiled extension links against libtorch)

try:
    from . import _C  # noqa: F401  (loading it registers the lenet_ext::* ops)
except ImportError as exc:  # never fall back to torch layers silently
    raise ImportError(
        "lenet_ext: the compiled kernels (lenet_ext._C) could not be loaded "
        f"({exc}). They must be built against the torch you run ({torch.__version__}); rebuild with\n"
        "    pip install --no-build-isolation -e .\n"
        "from the lenet_ext source folder (or `pip install --no-build-isolation --force-reinstall .`)."
    ) from exc

from . import ops  # noqa: E402
from .models import LeNet5  # noqa: E402

__version__ = "0.1.0"


def backends():
    """The devices our kernels were built for, e.g. ["cpu"] or ["cpu", "cuda"]."""
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return [name for name, key in (("cpu", "CPU"), ("cuda", "CUDA")) if has("lenet_ext::conv2d_sigmoid", key)]


def new_cuda_kernels(enable=None):
    """Whether the CUDA path runs this round's kernels: LeNet5's fused ops (the whole network in one
    launch for inference, one op for training) and the second-generation per-op kernels (tiled
    products, channel groups, chunked weight gradients). Off unless LENET_EXT_CUDA_FUSED=1, until a
    GPU run has validated them; new_cuda_kernels(True) or (False) switches them for this process."""
    from . import models
    if enable is not None:
        models.CUDA_FUSED = bool(enable)
        _C.set_cuda_kernels_v2(bool(enable))
    return models.CUDA_FUSED


def cpu_isa():
    """The instruction set of the CPU kernels in this process: "avx2" (AVX2 + FMA, taken where the
    CPU has both) or "base" (the build's baseline, SSE2 on x86-64). Chosen once per process;
    LENET_EXT_CPU_ISA=base before the first op forces the baseline."""
    return _C.cpu_isa()


__all__ = ["LeNet5", "ops", "backends", "cpu_isa", "new_cuda_kernels", "__version__"]
