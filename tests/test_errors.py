"""Bad input raises a Python exception that names the argument: TypeError for a wrong dtype or
argument type, ValueError for a wrong shape, value or device. Never a crash."""

import pytest
import torch

import lenet_ext
from lenet_ext import ops


def x4(*shape, dtype=torch.float32, device=None):
    """Random values (on the default device, set per case by test_bad_input_raises)."""
    return torch.randn(*shape, device=device).to(dtype)


CONV = [  # (description, call, exception, words the message must contain)
    ("input 3-D", lambda: ops.conv2d_sigmoid(x4(3, 8, 8), x4(4, 3, 3, 3)), ValueError, "input must be 4-D"),
    ("weight 3-D", lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 3, 3)), ValueError, "weight must be 4-D"),
    ("channels", lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 2, 3, 3)), ValueError, "channels"),
    ("bias length", lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 3, 3, 3), x4(5)), ValueError, "bias"),
    ("bias 2-D", lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 3, 3, 3), x4(4, 1)), ValueError, "bias"),
    (
        "kernel too big",
        lambda: ops.conv2d_sigmoid(x4(2, 3, 4, 4), x4(4, 3, 7, 7), None, 1, 1),
        ValueError,
        "larger than the padded input",
    ),
    ("stride 0", lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 3, 3, 3), None, 0), ValueError, "stride"),
    ("padding < 0", lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 3, 3, 3), None, 1, -1), ValueError, "padding"),
    ("stride float", lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 3, 3, 3), None, 1.5), TypeError, "stride"),
    (
        "int input",
        lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8, dtype=torch.int64), x4(4, 3, 3, 3)),
        TypeError,
        "input must be float32 or float64",
    ),
    (
        "half input",
        lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8, dtype=torch.half), x4(4, 3, 3, 3, dtype=torch.half)),
        TypeError,
        "input must be float32 or float64",
    ),
    (
        "complex input",
        lambda: ops.conv2d_sigmoid(torch.randn(2, 3, 8, 8, dtype=torch.complex64), x4(4, 3, 3, 3)),
        TypeError,
        "float32 or float64",
    ),
    (
        "dtype mismatch",
        lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 3, 3, 3, dtype=torch.float64)),
        TypeError,
        "weight has dtype",
    ),
    (
        "bias dtype",
        lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 3, 3, 3), x4(4, dtype=torch.float64)),
        TypeError,
        "bias has dtype",
    ),
    (
        "device mismatch",
        lambda: ops.conv2d_sigmoid(x4(2, 3, 8, 8), x4(4, 3, 3, 3, device="meta")),
        ValueError,
        "same device",
    ),
]

POOL = [
    ("input 3-D", lambda: ops.avg_pool2d(x4(3, 8, 8), 2), ValueError, "input must be 4-D"),
    ("kernel 0", lambda: ops.avg_pool2d(x4(1, 3, 8, 8), 0), ValueError, "kernel_size"),
    ("stride 0", lambda: ops.avg_pool2d(x4(1, 3, 8, 8), 2, 0), ValueError, "stride"),
    ("kernel too big", lambda: ops.avg_pool2d(x4(1, 3, 4, 4), 5), ValueError, "larger than the input"),
    ("kernel tuple", lambda: ops.avg_pool2d(x4(1, 3, 8, 8), (2, 2)), TypeError, "kernel_size must be an int"),
    ("int input", lambda: ops.avg_pool2d(x4(1, 3, 8, 8, dtype=torch.int32), 2), TypeError, "float32 or float64"),
    ("half input", lambda: ops.avg_pool2d(x4(1, 3, 8, 8, dtype=torch.bfloat16), 2), TypeError, "float32 or float64"),
]

CONV_POOL = [
    (
        "pool 0",
        lambda: ops.conv2d_sigmoid_pool(x4(1, 3, 8, 8), x4(4, 3, 3, 3), None, 0, 0),
        ValueError,
        "pool must be >= 1",
    ),
    (
        "pool too big",
        lambda: ops.conv2d_sigmoid_pool(x4(1, 3, 8, 8), x4(4, 3, 3, 3), None, 0, 7),
        ValueError,
        "larger than the convolution's output",
    ),
    (
        "pool float",
        lambda: ops.conv2d_sigmoid_pool(x4(1, 3, 8, 8), x4(4, 3, 3, 3), None, 0, 2.0),
        TypeError,
        "pool must be an int",
    ),
    ("conv-pool channels", lambda: ops.conv2d_sigmoid_pool(x4(1, 3, 8, 8), x4(4, 2, 3, 3)), ValueError, "channels"),
    (
        "conv-pool grad shape",
        lambda: torch.ops.lenet_ext.conv2d_sigmoid_pool_backward(
            x4(1, 4, 2, 2), None, x4(1, 4, 6, 6), x4(1, 3, 8, 8), x4(4, 3, 3, 3), 0, 2, [True, True, True]
        ),
        ValueError,
        "grad_pooled must have shape",
    ),
]

LINEAR = [
    ("0-D input", lambda: ops.linear(torch.tensor(1.0), x4(3, 1)), ValueError, "input must have at least 1"),
    ("weight 1-D", lambda: ops.linear(x4(2, 5), x4(5)), ValueError, "weight must be 2-D"),
    ("features", lambda: ops.linear(x4(2, 5), x4(3, 4)), ValueError, "features"),
    ("bias length", lambda: ops.linear(x4(2, 5), x4(3, 5), x4(4)), ValueError, "bias"),
    ("int input", lambda: ops.linear(x4(2, 5, dtype=torch.int64), x4(3, 5)), TypeError, "float32 or float64"),
    ("dtype mismatch", lambda: ops.linear(x4(2, 5, dtype=torch.float64), x4(3, 5)), TypeError, "weight has dtype"),
    ("device mismatch", lambda: ops.linear(x4(2, 5), x4(3, 5, device="meta")), ValueError, "same device"),
    ("sigmoid not bool", lambda: ops.linear(x4(2, 5), x4(3, 5), None, 1), TypeError, "sigmoid must be a bool"),
]

MODEL = [
    ("3-D images", lambda: lenet_ext.LeNet5()(x4(4, 28, 28)), ValueError, "(N, 1, 28, 28)"),
    ("3 channels", lambda: lenet_ext.LeNet5()(x4(4, 3, 28, 28)), ValueError, "(N, 1, 28, 28)"),
    ("32x32", lambda: lenet_ext.LeNet5()(x4(4, 1, 32, 32)), ValueError, "(N, 1, 28, 28)"),
    (
        "uint8 images",
        lambda: lenet_ext.LeNet5()(torch.zeros(4, 1, 28, 28, dtype=torch.uint8)),
        TypeError,
        "floating-point",
    ),
    ("not a tensor", lambda: lenet_ext.LeNet5()([[0.0]]), TypeError, "torch.Tensor"),
    ("torch impl too", lambda: lenet_ext.LeNet5(impl="torch")(x4(4, 1, 32, 32)), ValueError, "(N, 1, 28, 28)"),
    ("unknown impl", lambda: lenet_ext.LeNet5(impl="cudnn"), ValueError, "impl must be one of"),
    ("fused: 32x32 images", lambda: ops.lenet5_forward(x4(2, 1, 32, 32), _params()), ValueError, "(N, 1, 28, 28)"),
    (
        "fused: wrong c3",
        lambda: ops.lenet5_forward(x4(2, 1, 28, 28), _params(c3=x4(16, 3, 5, 5))),
        ValueError,
        "c3_weight must have shape [16, 6, 5, 5]",
    ),
    (
        "fused: float64 f6",
        lambda: ops.lenet5_forward(x4(2, 1, 28, 28), _params(f6=x4(84, 120, dtype=torch.float64))),
        TypeError,
        "f6_weight has dtype Double",
    ),
    ("fused: 9 params", lambda: ops.lenet5_forward(x4(2, 1, 28, 28), _params()[:9]), ValueError, "take 10"),
    (
        "fused: int images",
        lambda: ops.lenet5_forward(torch.ones(2, 1, 28, 28, dtype=torch.int32), _params()),
        TypeError,
        "images must be float32 or float64",
    ),
    (
        "train op: 32x32 images",
        lambda: ops.lenet5_train_forward(x4(2, 1, 32, 32), _params()),
        ValueError,
        "(N, 1, 28, 28)",
    ),
    (
        "train op: wrong c3",
        lambda: ops.lenet5_train_forward(x4(2, 1, 28, 28), _params(c3=x4(16, 3, 5, 5))),
        ValueError,
        "c3_weight must have shape [16, 6, 5, 5]",
    ),
    (
        "train op: float64 f6",
        lambda: ops.lenet5_train_forward(x4(2, 1, 28, 28), _params(f6=x4(84, 120, dtype=torch.float64))),
        TypeError,
        "f6_weight has dtype Double",
    ),
    (
        "train op: 11 params",
        lambda: ops.lenet5_train_forward(x4(2, 1, 28, 28), _params() + [x4(3)]),
        ValueError,
        "take 10",
    ),
    (
        "train backward: grad_logits shape",
        lambda: _train_backward(grad_shape=(2, 9)),
        ValueError,
        "grad_logits must have shape [2, 10]",
    ),
    (
        "train backward: activation shape",
        lambda: _train_backward(c3_shape=(2, 16, 9, 9)),
        ValueError,
        "c3 must have shape [2, 16, 10, 10], got [2, 16, 9, 9]",
    ),
]


def _train_backward(grad_shape=(2, 10), c3_shape=None):
    params = _params()
    x = x4(2, 1, 28, 28)
    logits, c1, s2, c3, s4, c5, f6 = ops.lenet5_train_forward(x, params)
    if c3_shape is not None:
        c3 = x4(*c3_shape)
    c1w, _, c3w, _, c5w, _, f6w, _, ow, _ = params
    return torch.ops.lenet_ext.lenet5_train_backward(
        x4(*grad_shape), x, c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, ow, True
    )


def _params(c3=None, f6=None):
    p = list(lenet_ext.LeNet5()._fused_params())
    if c3 is not None:
        p[2] = c3
    if f6 is not None:
        p[6] = f6
    return [t.detach() for t in p]


BACKWARD = [  # the explicit backward ops are public too
    (
        "conv grad shape",
        lambda: torch.ops.lenet_ext.conv2d_sigmoid_backward(
            x4(2, 4, 5, 5), x4(2, 4, 6, 6), x4(2, 3, 8, 8), x4(4, 3, 3, 3), 1, 0, [True, True, True]
        ),
        ValueError,
        "grad_output must have shape",
    ),
    (
        "pool input_size",
        lambda: torch.ops.lenet_ext.avg_pool2d_backward(x4(1, 3, 4, 4), [1, 3, 9], 2, 2),
        ValueError,
        "input_size",
    ),
    (
        "pool grad shape",
        lambda: torch.ops.lenet_ext.avg_pool2d_backward(x4(1, 3, 3, 4), [1, 3, 8, 8], 2, 2),
        ValueError,
        "grad_output must have shape",
    ),
    (
        "linear needs output",
        lambda: torch.ops.lenet_ext.linear_backward(x4(2, 3), None, x4(2, 5), x4(3, 5), True, [True, True, True]),
        ValueError,
        "needs the forward output",
    ),
]


CASES = CONV + POOL + CONV_POOL + LINEAR + MODEL + BACKWARD


def _outcome(call, device):
    """(exception type, message) of call() with tensors made on device."""
    with torch.device(device):
        try:
            call()
        except (TypeError, ValueError) as exc:
            return type(exc), str(exc)
    return None, "no error"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_bad_input_raises(case):
    _, call, exc, words = case
    kind, message = _outcome(call, "cpu")
    assert kind is exc and words in message, (kind, message)


@pytest.mark.parametrize("case", [c for c in CASES if "device" not in c[0]], ids=lambda c: c[0])
def test_kernel_checks_match_fake_checks(case):
    """The same bad call fails the same way, with the same message, in eager mode (the C++ checks,
    csrc/checks.h) and on meta tensors (the fake kernels, lenet_ext/checks.py). (The cases that put
    one tensor on meta on purpose are the device checks, which meta tensors cannot fail.)"""
    _, call, exc, words = case
    eager, fake = _outcome(call, "cpu"), _outcome(call, "meta")
    assert fake == eager
