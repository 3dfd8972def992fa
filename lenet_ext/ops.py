"""Python face of the lenet_ext custom ops: typed wrappers and the fake (shape) kernels that
torch.compile and torch.export trace with.

    conv2d_sigmoid(x, weight, bias, stride, padding) == sigmoid(F.conv2d(x, weight, bias, stride, padding))
    avg_pool2d(x, kernel_size, stride)               == F.avg_pool2d(x, kernel_size, stride)
    conv2d_sigmoid_pool(x, weight, bias, padding, pool)
        == (avg_pool2d(a, pool), a) with a = conv2d_sigmoid(x, weight, bias, 1, padding), in one pass
    linear(x, weight, bias, sigmoid)                 == F.linear(x, weight, bias), then sigmoid if asked
    lenet5_forward(images, params)                   == LeNet-5's forward, all layers in one op
                                                        (inference only: no autograd)
    lenet5_train_forward(images, params)             == the same for training: (logits, activations),
                                                        one op and one autograd node

Autograd is registered in C++ (csrc/autograd.cpp). Argument errors come from the kernels (C++)
in eager mode and from the fake kernels below while torch.compile traces: TypeError for a wrong dtype or a
non-int hyperparameter, ValueError for wrong shapes, values or devices.
Double backward is not supported.
"""

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _C, checks  # type: ignore[attr-defined]

_ops = torch.ops.lenet_ext
# The whole-network ops' overloads, looked up once (two attribute lookups on torch.ops per call
# otherwise, a measurable share of a batch-1 call: docs/performance.md).
_LENET5_FORWARD = _ops.lenet5_forward.default
_LENET5_TRAIN_FORWARD = _ops.lenet5_train_forward.default

__all__ = ["conv2d_sigmoid", "avg_pool2d", "conv2d_sigmoid_pool", "linear", "lenet5_forward", "lenet5_train_forward"]

# lenet5_forward's parameters, in its schema's order.
LENET5_PARAMS = (
    "c1.weight",
    "c1.bias",
    "c3.weight",
    "c3.bias",
    "c5.weight",
    "c5.bias",
    "f6.weight",
    "f6.bias",
    "output.weight",
    "output.bias",
)


def _as_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"lenet_ext: {name} must be an int, got {type(value).__name__} {value!r}")
    return value


def conv2d_sigmoid(
    x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: int = 1, padding: int = 0
) -> Tensor:
    """sigmoid(conv2d(x, weight, bias)) in one pass. x (N, C, H, W), weight (O, C, kH, kW), bias (O,) or None."""
    return _ops.conv2d_sigmoid.default(x, weight, bias, _as_int(stride, "stride"), _as_int(padding, "padding"))


def conv2d_sigmoid_pool(
    x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, padding: int = 0, pool: int = 2
) -> Tuple[Tensor, Tensor]:
    """A stride-1 conv2d_sigmoid followed by pool x pool average pooling (stride pool, floor mode),
    in one pass: returns (pooled, activation), activation being the conv2d_sigmoid output.
    CPU and CUDA kernels."""
    return _ops.conv2d_sigmoid_pool.default(x, weight, bias, _as_int(padding, "padding"), _as_int(pool, "pool"))


def avg_pool2d(x: Tensor, kernel_size: int = 2, stride: Optional[int] = None) -> Tensor:
    """Average pooling over k x k windows, no padding, floor mode; stride defaults to kernel_size."""
    kernel_size = _as_int(kernel_size, "kernel_size")
    stride = kernel_size if stride is None else _as_int(stride, "stride")
    return _ops.avg_pool2d.default(x, kernel_size, stride)


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, sigmoid: bool = False) -> Tensor:
    """x @ weight.T + bias, followed by a sigmoid when `sigmoid`. x (..., in), weight (out, in), bias (out,)."""
    if not isinstance(sigmoid, bool):
        raise TypeError(f"lenet_ext: sigmoid must be a bool, got {type(sigmoid).__name__}")
    return _ops.linear.default(x, weight, bias, sigmoid)


# ---------------------------------------------------------------------------------------------
# Fake kernels: output shapes for torch.compile and meta tensors, after the checks the C++ ops
# make (checks.py, the twin of csrc/checks.h).
# ---------------------------------------------------------------------------------------------


@torch.library.register_fake("lenet_ext::conv2d_sigmoid")
def _conv2d_sigmoid_fake(x, weight, bias, stride, padding):
    return x.new_empty(checks.conv2d(x, weight, bias, stride, padding))


@torch.library.register_fake("lenet_ext::conv2d_sigmoid_backward")
def _conv2d_sigmoid_backward_fake(grad_output, output, x, weight, stride, padding, output_mask):
    checks.conv2d_backward(grad_output, output, x, weight, stride, padding)
    return _masked_grads(x, weight, weight.shape[0], output_mask)


@torch.library.register_fake("lenet_ext::conv2d_sigmoid_pool")
def _conv2d_sigmoid_pool_fake(x, weight, bias, padding, pool):
    shape = checks.conv2d_sigmoid_pool(x, weight, bias, padding, pool)
    return x.new_empty((shape[0], shape[1], shape[2] // pool, shape[3] // pool)), x.new_empty(shape)


@torch.library.register_fake("lenet_ext::conv2d_sigmoid_pool_backward")
def _conv2d_sigmoid_pool_backward_fake(grad_pooled, grad_activation, activation, x, weight, padding, pool, output_mask):
    checks.conv2d_sigmoid_pool_backward(grad_pooled, grad_activation, activation, x, weight, padding, pool)
    return _masked_grads(x, weight, weight.shape[0], output_mask)


@torch.library.register_fake("lenet_ext::avg_pool2d")
def _avg_pool2d_fake(x, kernel_size, stride):
    return x.new_empty(checks.avg_pool2d(x, kernel_size, stride))


@torch.library.register_fake("lenet_ext::avg_pool2d_backward")
def _avg_pool2d_backward_fake(grad_output, input_size, kernel_size, stride):
    checks.avg_pool2d_backward(grad_output, input_size, kernel_size, stride)
    return grad_output.new_empty(input_size)


@torch.library.register_fake("lenet_ext::linear")
def _linear_fake(x, weight, bias, sigmoid):
    return x.new_empty(checks.linear(x, weight, bias))


@torch.library.register_fake("lenet_ext::linear_backward")
def _linear_backward_fake(grad_output, output, x, weight, sigmoid, output_mask):
    checks.linear_backward(grad_output, output, x, weight, sigmoid)
    return _masked_grads(x, weight, weight.shape[0], output_mask)


def lenet5_forward(images: Tensor, params: Sequence[Tensor]) -> Tensor:
    """The whole LeNet-5 forward in one op: (N, 1, 28, 28) images -> (N, classes) logits, equal to
    running c1, s2, c3, s4, c5, f6 and the output layer through the ops above. `params` are the
    ten tensors named in LENET5_PARAMS, in that order. Without autograd: for inference
    (LeNet5(impl="ext") uses it when no gradient is wanted). CPU, and CUDA in one launch."""
    params = _lenet5_params(params)
    if not torch.compiler.is_compiling():
        # The same op through the dispatcher, called from C++ with its C++ signature: less than
        # torch.ops' boxed call costs at batch 1 (docs/performance.md). NotImplemented where an
        # argument is not a plain tensor or parameter, or a __torch_function__ mode is on.
        logits = _C.lenet5_forward(images, *params)
        if logits is not NotImplemented:
            return logits
    return _LENET5_FORWARD(images, *params)


def _lenet5_params(params: Sequence[Tensor]) -> Tuple[Tensor, ...]:
    params = tuple(params)
    if len(params) != len(LENET5_PARAMS):
        raise ValueError(
            f"lenet_ext: LeNet-5's ops take {len(LENET5_PARAMS)} parameters "
            f"({', '.join(LENET5_PARAMS)}), got {len(params)}"
        )
    return params


def lenet5_train_forward(images: Tensor, params: Sequence[Tensor]) -> Tuple[Tensor, ...]:
    """LeNet-5's forward for training in one op: returns (logits, c1, s2, c3, s4, c5, f6), the logits
    and every activation (c1 and c3 before pooling, c5 as (N, 120, 1, 1)), equal to running the
    layer ops one by one. One autograd node for the whole network: gradients flow through the
    logits to the images and the ten parameters (LENET5_PARAMS order); the activations are
    returned without gradient. CPU and CUDA (LeNet5(impl="ext") uses it when gradients are wanted;
    on CUDA with the v2 kernels, lenet_ext.cuda_kernels("v2"), until a GPU run has validated its kernels)."""
    return _LENET5_TRAIN_FORWARD(images, *_lenet5_params(params))


@torch.library.register_fake("lenet_ext::lenet5_train_forward")
def _lenet5_train_forward_fake(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb):
    logits = _lenet5_forward_fake(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb)
    n, new = images.shape[0], images.new_empty
    return (
        logits,
        new((n, 6, 28, 28)),
        new((n, 6, 14, 14)),
        new((n, 16, 10, 10)),
        new((n, 16, 5, 5)),
        new((n, 120, 1, 1)),
        new((n, 84)),
    )


@torch.library.register_fake("lenet_ext::lenet5_train_backward")
def _lenet5_train_backward_fake(grad_logits, images, c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, outw, images_grad):
    classes = checks.lenet5_backward_args(grad_logits, images, c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, outw)
    new = images.new_empty
    return (
        new(images.shape if images_grad else (0,)),
        new(c1w.shape),
        new((6,)),
        new(c3w.shape),
        new((16,)),
        new(c5w.shape),
        new((120,)),
        new(f6w.shape),
        new((84,)),
        new(outw.shape),
        new((classes,)),
    )


@torch.library.register_fake("lenet_ext::lenet5_forward")
def _lenet5_forward_fake(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb):
    classes = checks.lenet5_args(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb)
    return images.new_empty((images.shape[0], classes))


def _masked_grads(x: Tensor, weight: Tensor, out_features, output_mask):
    """Gradient shapes of (input, weight, bias); a gradient not asked for is an empty tensor."""

    def grad(needed, shape):
        return x.new_empty(shape if needed else (0,))

    return (grad(output_mask[0], x.shape), grad(output_mask[1], weight.shape), grad(output_mask[2], (out_features,)))


# Autograd for every forward op is in C++ (csrc/autograd.cpp, the Autograd dispatch key): it saves
# the sigmoid output, not the pre-activation, and asks the explicit backward ops only for the
# gradients autograd needs. lenet5_forward has none: it is for inference.
