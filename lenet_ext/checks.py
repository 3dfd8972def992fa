"""The argument checks of csrc/checks.h in Python, with the same messages, for the fake kernels
(ops.py): a bad call fails the same way on meta tensors and under torch.compile as in eager mode.
TypeError for a dtype, ValueError for a shape, value or device. Shape conditions go through
torch._check_value, so that symbolic shapes are checked (and guarded) rather than read."""

from typing import Optional, Sequence

import torch
from torch import Tensor

# c10's names of the scalar types, as the C++ messages print them.
_TYPE_NAMES = {
    torch.float32: "Float",
    torch.float64: "Double",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
    torch.int64: "Long",
    torch.int32: "Int",
    torch.int16: "Short",
    torch.int8: "Char",
    torch.uint8: "Byte",
    torch.bool: "Bool",
    torch.complex64: "ComplexFloat",
    torch.complex128: "ComplexDouble",
}


def _type(dtype: torch.dtype) -> str:
    return _TYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def _sizes(shape: Sequence) -> str:
    """A shape as c10 prints an IntArrayRef: [2, 3, 8, 8]."""
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _value(ok, message) -> None:
    torch._check_value(ok, lambda: "lenet_ext: " + message())


def floating(t: Tensor, name: str) -> None:
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"lenet_ext: {name} must be float32 or float64, got {_type(t.dtype)}")


def like(t: Tensor, name: str, ref: Tensor, ref_name: str) -> None:
    """t must match ref in dtype and device."""
    floating(t, name)
    if t.dtype != ref.dtype:
        raise TypeError(
            f"lenet_ext: {name} has dtype {_type(t.dtype)} but {ref_name} has dtype {_type(ref.dtype)}; they must match"
        )
    if t.device != ref.device:
        raise ValueError(
            f"lenet_ext: {name} is on {t.device} but {ref_name} is on {ref.device}; they must be on the same device"
        )


def dim(t: Tensor, name: str, d: int, layout: str) -> None:
    if t.dim() != d:
        raise ValueError(f"lenet_ext: {name} must be {d}-D {layout}, got {t.dim()}-D with shape {_sizes(t.shape)}")


def bias(b: Optional[Tensor], features, ref: Tensor) -> None:
    if b is None:
        return
    like(b, "bias", ref, "input")
    _value(
        b.dim() == 1 and b.shape[0] == features,
        lambda: f"bias must have shape ({features},), one value per output channel, got {_sizes(b.shape)}",
    )


def shaped(t: Tensor, name: str, ref: Tensor, ref_name: str, expected: Sequence) -> None:
    like(t, name, ref, ref_name)
    _value(
        t.dim() == len(expected) and all(a == b for a, b in zip(t.shape, expected)),
        lambda: f"{name} must have shape {_sizes(expected)}, got {_sizes(t.shape)}",
    )


def conv2d(x: Tensor, weight: Tensor, b: Optional[Tensor], stride: int, padding: int):
    """check_conv2d; returns the output's shape (N, O, OH, OW)."""
    floating(x, "input")
    like(weight, "weight", x, "input")
    dim(x, "input", 4, "(N, C, H, W)")
    dim(weight, "weight", 4, "(C_out, C_in, kH, kW)")
    _value(
        x.shape[1] == weight.shape[1],
        lambda: (
            f"input has {x.shape[1]} channels but weight expects {weight.shape[1]} (weight.shape[1]); they must match"
        ),
    )
    _value(
        weight.shape[0] > 0 and weight.shape[2] > 0 and weight.shape[3] > 0,
        lambda: f"weight must have non-zero C_out, kH and kW, got {_sizes(weight.shape)}",
    )
    bias(b, weight.shape[0], x)
    _value(stride >= 1, lambda: f"stride must be >= 1, got {stride}")
    _value(padding >= 0, lambda: f"padding must be >= 0, got {padding}")
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    _value(
        h + 2 * padding >= kh and w + 2 * padding >= kw,
        lambda: f"kernel size ({kh}, {kw}) is larger than the padded input ({h + 2 * padding}, {w + 2 * padding})",
    )
    return (n, o, (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1)


def conv2d_backward(grad_output: Tensor, output: Tensor, x: Tensor, weight: Tensor, stride: int, padding: int):
    out = conv2d(x, weight, None, stride, padding)
    shaped(grad_output, "grad_output", x, "input", out)
    shaped(output, "output", x, "input", out)
    return out


def conv2d_sigmoid_pool(x: Tensor, weight: Tensor, b: Optional[Tensor], padding: int, pool: int):
    """check_conv2d_sigmoid_pool; returns the convolution's output shape."""
    out = conv2d(x, weight, b, 1, padding)
    _value(pool >= 1, lambda: f"pool must be >= 1, got {pool}")
    _value(
        pool <= out[2] and pool <= out[3],
        lambda: f"pool {pool} is larger than the convolution's output ({out[2]}, {out[3]})",
    )
    return out


def conv2d_sigmoid_pool_backward(
    grad_pooled: Tensor,
    grad_activation: Optional[Tensor],
    activation: Tensor,
    x: Tensor,
    weight: Tensor,
    padding: int,
    pool: int,
):
    out = conv2d_sigmoid_pool(x, weight, None, padding, pool)
    shaped(grad_pooled, "grad_pooled", x, "input", (out[0], out[1], out[2] // pool, out[3] // pool))
    if grad_activation is not None:
        shaped(grad_activation, "grad_activation", x, "input", out)
    shaped(activation, "activation", x, "input", out)
    return out


def avg_pool2d(x: Tensor, kernel_size: int, stride: int):
    """check_avg_pool2d; returns the output's shape."""
    floating(x, "input")
    dim(x, "input", 4, "(N, C, H, W)")
    _value(kernel_size >= 1, lambda: f"kernel_size must be >= 1, got {kernel_size}")
    _value(stride >= 1, lambda: f"stride must be >= 1, got {stride}")
    n, c, h, w = x.shape
    _value(
        h >= kernel_size and w >= kernel_size,
        lambda: f"kernel_size {kernel_size} is larger than the input ({h}, {w})",
    )
    return (n, c, (h - kernel_size) // stride + 1, (w - kernel_size) // stride + 1)


def avg_pool2d_backward(grad_output: Tensor, input_size: Sequence, kernel_size: int, stride: int) -> None:
    floating(grad_output, "grad_output")
    _value(len(input_size) == 4, lambda: f"input_size must be (N, C, H, W), got {_sizes(input_size)}")
    _value(
        kernel_size >= 1 and stride >= 1,
        lambda: f"kernel_size and stride must be >= 1, got {kernel_size} and {stride}",
    )
    n, c, h, w = input_size
    _value(
        n >= 0 and c >= 0 and h >= kernel_size and w >= kernel_size,
        lambda: f"input_size {_sizes(input_size)} does not fit kernel_size {kernel_size}",
    )
    out = (n, c, (h - kernel_size) // stride + 1, (w - kernel_size) // stride + 1)
    _value(
        grad_output.dim() == 4 and all(a == b for a, b in zip(grad_output.shape, out)),
        lambda: f"grad_output must have shape {_sizes(out)}, got {_sizes(grad_output.shape)}",
    )


def linear(x: Tensor, weight: Tensor, b: Optional[Tensor]):
    """check_linear; returns the output's shape."""
    floating(x, "input")
    like(weight, "weight", x, "input")
    if x.dim() < 1:
        raise ValueError("lenet_ext: input must have at least 1 dimension (..., in_features), got 0-D")
    dim(weight, "weight", 2, "(out_features, in_features)")
    _value(
        x.shape[-1] == weight.shape[1],
        lambda: (
            f"input has {x.shape[-1]} features (input.shape[-1]) but weight expects {weight.shape[1]} "
            "(weight.shape[1]); they must match"
        ),
    )
    bias(b, weight.shape[0], x)
    return (*x.shape[:-1], weight.shape[0])


def linear_backward(grad_output: Tensor, output: Optional[Tensor], x: Tensor, weight: Tensor, sigmoid: bool) -> None:
    out = linear(x, weight, None)
    shaped(grad_output, "grad_output", x, "input", out)
    if sigmoid:
        if output is None:
            raise ValueError("lenet_ext: linear_backward with sigmoid=True needs the forward output")
        shaped(output, "output", x, "input", out)


def lenet5_images(images: Tensor) -> None:
    floating(images, "images")
    _value(
        images.dim() == 4 and images.shape[1] == 1 and images.shape[2] == 28 and images.shape[3] == 28,
        lambda: f"images must have shape (N, 1, 28, 28), got {_sizes(images.shape)}",
    )


def lenet5_output_weight(outw: Tensor, images: Tensor) -> None:
    like(outw, "output_weight", images, "images")
    _value(
        outw.dim() == 2 and outw.shape[1] == 84 and outw.shape[0] >= 1,
        lambda: f"output_weight must have shape (classes, 84), got {_sizes(outw.shape)}",
    )


def lenet5_args(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb):
    """check_lenet5_args; returns the number of classes."""
    lenet5_images(images)
    shaped(c1w, "c1_weight", images, "images", (6, 1, 5, 5))
    shaped(c1b, "c1_bias", images, "images", (6,))
    shaped(c3w, "c3_weight", images, "images", (16, 6, 5, 5))
    shaped(c3b, "c3_bias", images, "images", (16,))
    shaped(c5w, "c5_weight", images, "images", (120, 16, 5, 5))
    shaped(c5b, "c5_bias", images, "images", (120,))
    shaped(f6w, "f6_weight", images, "images", (84, 120))
    shaped(f6b, "f6_bias", images, "images", (84,))
    lenet5_output_weight(outw, images)
    shaped(outb, "output_bias", images, "images", (outw.shape[0],))
    return outw.shape[0]


def lenet5_backward_args(grad_logits, images, c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, outw):
    """check_lenet5_backward_args; returns the number of classes."""
    lenet5_images(images)
    n = images.shape[0]
    lenet5_output_weight(outw, images)
    shaped(grad_logits, "grad_logits", images, "images", (n, outw.shape[0]))
    shaped(c1, "c1", images, "images", (n, 6, 28, 28))
    shaped(s2, "s2", images, "images", (n, 6, 14, 14))
    shaped(c3, "c3", images, "images", (n, 16, 10, 10))
    shaped(s4, "s4", images, "images", (n, 16, 5, 5))
    shaped(c5, "c5", images, "images", (n, 120, 1, 1))
    shaped(f6, "f6", images, "images", (n, 84))
    shaped(c1w, "c1_weight", images, "images", (6, 1, 5, 5))
    shaped(c3w, "c3_weight", images, "images", (16, 6, 5, 5))
    shaped(c5w, "c5_weight", images, "images", (120, 16, 5, 5))
    shaped(f6w, "f6_weight", images, "images", (84, 120))
    return outw.shape[0]
