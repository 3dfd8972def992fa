"""Each op against its torch reference: forward and every gradient on random inputs.

float32 tolerances (ours and torch add the same products in different orders):
    |ours - torch| <= ATOL * max(1, max|torch|) + RTOL * |torch|,  ATOL = 1e-5, RTOL = 1e-4
i.e. an absolute error of 1e-5 relative to the tensor's largest value (weight gradients are
sums over the whole batch and reach tens), plus 1e-4 relative per element.
float64: torch.autograd.gradcheck (finite differences) with its defaults, and
torch.library.opcheck for every op, with and without requires_grad.
"""

import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import lenet_ext  # noqa: F401  (registers the ops)
from lenet_ext import ops

ATOL, RTOL = 1e-5, 1e-4


def close(actual, expected, dtype=torch.float32):
    if dtype == torch.float64:
        torch.testing.assert_close(actual, expected, atol=1e-10, rtol=1e-9)
    else:
        scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
        torch.testing.assert_close(actual, expected, atol=ATOL * scale, rtol=RTOL)


def noncontiguous(t):
    """The same values in a non-contiguous layout: a strided view into a bigger buffer, taking
    every other element along the last dimension longer than 1."""
    dims = [d for d in range(t.dim()) if t.shape[d] > 1]
    if not dims:  # a single element has no layout to vary
        return t.clone()
    d = dims[-1]
    shape = list(t.shape)
    shape[d] *= 2
    view = torch.randn(shape, dtype=t.dtype, device=t.device)[(slice(None),) * d + (slice(None, None, 2),)]
    view.copy_(t)
    assert not view.is_contiguous()
    return view


def check_parity(ours, ref, inputs, dtype):
    """Forward and the gradient of every input that requires grad, for a random upstream gradient."""
    y, r = ours(*inputs), ref(*inputs)
    close(y, r, dtype)
    grad = torch.randn_like(r)
    wrt = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    for g_ours, g_ref in zip(torch.autograd.grad(y, wrt, grad), torch.autograd.grad(r, wrt, grad)):
        close(g_ours, g_ref, dtype)


def leaf(*shape, dtype=torch.float32, device="cpu", requires_grad=True):
    return torch.randn(*shape, dtype=dtype, device=device).requires_grad_(requires_grad)


# ----------------------------------------------------------------------------- conv2d_sigmoid

CONV_CASES = [  # (N, C, H, W, O, kH, kW, stride, padding)
    (1, 1, 28, 28, 6, 5, 5, 1, 2),  # LeNet c1
    (64, 6, 14, 14, 16, 5, 5, 1, 0),  # LeNet c3
    (33, 16, 5, 5, 120, 5, 5, 1, 0),  # LeNet c5 (window covers the whole input)
    (7, 3, 11, 9, 4, 3, 5, 2, 1),  # odd sizes, rectangular kernel, stride and padding
    (5, 2, 13, 13, 3, 3, 3, 3, 2),
    (2, 4, 6, 7, 5, 7, 7, 1, 3),  # kernel larger than the unpadded input
    (3, 5, 9, 9, 2, 1, 1, 2, 0),  # 1x1 kernel
    (17, 8, 8, 8, 9, 4, 4, 4, 0),  # stride == kernel
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_sigmoid_matches_torch(case, bias, device):
    n, c, h, w, o, kh, kw, stride, padding = case
    x, weight = leaf(n, c, h, w, device=device), leaf(o, c, kh, kw, device=device)
    b = leaf(o, device=device) if bias else None
    check_parity(
        lambda x, w_, b_: ops.conv2d_sigmoid(x, w_, b_, stride, padding),
        lambda x, w_, b_: torch.sigmoid(F.conv2d(x, w_, b_, stride, padding)),
        (x, weight, b),
        torch.float32,
    )


@pytest.mark.parametrize("batch", [1, 2, 5, 31, 64])
def test_conv2d_sigmoid_batches_and_noncontiguous(batch, device):
    x = noncontiguous(torch.randn(batch, 3, 10, 10, device=device)).requires_grad_()
    weight = noncontiguous(torch.randn(4, 3, 3, 3, device=device)).requires_grad_()
    b = noncontiguous(torch.randn(4, device=device)).requires_grad_()
    check_parity(
        lambda *a: ops.conv2d_sigmoid(*a, 1, 1),
        lambda *a: torch.sigmoid(F.conv2d(*a, 1, 1)),
        (x, weight, b),
        torch.float32,
    )
    # channels_last input is also non-contiguous in NCHW terms
    xc = torch.randn(batch, 3, 10, 10, device=device).to(memory_format=torch.channels_last).requires_grad_()
    check_parity(
        lambda *a: ops.conv2d_sigmoid(*a, 2, 0),
        lambda *a: torch.sigmoid(F.conv2d(*a, 2, 0)),
        (xc, weight, b),
        torch.float32,
    )


@pytest.mark.parametrize(
    "needs",
    [(True, False, False), (False, True, False), (False, False, True), (False, True, True), (True, True, True)],
    ids=str,
)
def test_conv2d_sigmoid_partial_grads(needs, device):
    x, weight, b = leaf(4, 2, 7, 7, device=device), leaf(3, 2, 3, 3, device=device), leaf(3, device=device)
    for t, need in zip((x, weight, b), needs):
        t.requires_grad_(need)
    check_parity(
        lambda *a: ops.conv2d_sigmoid(*a, 1, 1),
        lambda *a: torch.sigmoid(F.conv2d(*a, 1, 1)),
        (x, weight, b),
        torch.float32,
    )


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (1, 2)])
def test_conv2d_sigmoid_gradcheck(stride, padding, device):
    x = leaf(2, 2, 6, 5, dtype=torch.float64, device=device)
    weight = leaf(3, 2, 3, 2, dtype=torch.float64, device=device)
    b = leaf(3, dtype=torch.float64, device=device)
    assert torch.autograd.gradcheck(lambda *a: ops.conv2d_sigmoid(*a, stride, padding), (x, weight, b))
    check_parity(
        lambda *a: ops.conv2d_sigmoid(*a, stride, padding),
        lambda *a: torch.sigmoid(F.conv2d(*a, stride, padding)),
        (x, weight, b),
        torch.float64,
    )


# ----------------------------------------------------------------------------- avg_pool2d

POOL_CASES = [  # (N, C, H, W, kernel, stride)
    (1, 6, 28, 28, 2, None),  # LeNet s2
    (64, 16, 10, 10, 2, None),  # LeNet s4
    (3, 2, 7, 9, 2, None),  # odd sizes: floor drops the last row/column
    (5, 3, 11, 11, 3, 2),  # overlapping windows
    (2, 4, 8, 6, 3, 3),
    (9, 1, 5, 5, 5, 1),  # one window
    (4, 2, 9, 10, 2, 3),  # stride > kernel: gaps
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_avg_pool2d_matches_torch(case, device):
    n, c, h, w, k, s = case
    x = leaf(n, c, h, w, device=device)
    check_parity(lambda x: ops.avg_pool2d(x, k, s), lambda x: F.avg_pool2d(x, k, s), (x,), torch.float32)
    xn = noncontiguous(torch.randn(n, c, h, w, device=device)).requires_grad_()
    check_parity(lambda x: ops.avg_pool2d(x, k, s), lambda x: F.avg_pool2d(x, k, s), (xn,), torch.float32)


@pytest.mark.parametrize("k,s", [(2, None), (3, 2), (2, 3)])
def test_avg_pool2d_gradcheck(k, s, device):
    x = leaf(2, 3, 7, 8, dtype=torch.float64, device=device)
    assert torch.autograd.gradcheck(lambda x: ops.avg_pool2d(x, k, s), (x,))
    check_parity(lambda x: ops.avg_pool2d(x, k, s), lambda x: F.avg_pool2d(x, k, s), (x,), torch.float64)


# ----------------------------------------------------------------------------- linear

LINEAR_CASES = [  # (input shape, out_features)
    ((1, 120), 84),  # LeNet f6
    ((64, 84), 10),  # LeNet output
    ((37, 13), 7),
    ((5, 3, 17), 6),  # extra leading dimensions
    ((9,), 4),  # 1-D input
    ((2, 1), 1),
]


@pytest.mark.parametrize("case", LINEAR_CASES, ids=str)
@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(case, sigmoid, bias, device):
    shape, out = case
    x, weight = leaf(*shape, device=device), leaf(out, shape[-1], device=device)
    b = leaf(out, device=device) if bias else None

    def ref(x, w_, b_):
        y = F.linear(x, w_, b_)
        return torch.sigmoid(y) if sigmoid else y

    check_parity(lambda x, w_, b_: ops.linear(x, w_, b_, sigmoid), ref, (x, weight, b), torch.float32)
    xn, wn = noncontiguous(x.detach()).requires_grad_(), noncontiguous(weight.detach()).requires_grad_()
    check_parity(lambda x, w_, b_: ops.linear(x, w_, b_, sigmoid), ref, (xn, wn, b), torch.float32)


@pytest.mark.parametrize("sigmoid", [False, True])
def test_linear_gradcheck(sigmoid, device):
    x = leaf(5, 7, dtype=torch.float64, device=device)
    weight, b = leaf(4, 7, dtype=torch.float64, device=device), leaf(4, dtype=torch.float64, device=device)
    assert torch.autograd.gradcheck(lambda *a: ops.linear(*a, sigmoid), (x, weight, b))


def test_linear_partial_grads(device):
    x, weight, b = leaf(6, 5, device=device), leaf(3, 5, device=device), leaf(3, device=device)
    x.requires_grad_(False)
    b.requires_grad_(False)
    check_parity(
        lambda *a: ops.linear(*a, True),
        lambda x, w_, b_: torch.sigmoid(F.linear(x, w_, b_)),
        (x, weight, b),
        torch.float32,
    )


def test_gradients_do_not_depend_on_the_thread_count():
    """Weight and bias gradients have the same bits with 1 and 2 threads. The dense layers (linear,
    and a convolution whose window covers its whole input: LeNet's c5) sum over the whole batch in
    one order; the other convolutions sum per chunk of images and add the chunks in order, the
    chunks depending on the batch size only (c1 and c3 with their pooling, and a strided one)."""

    def small(*shape):  # weights that keep the sigmoids out of saturation
        return (torch.randn(*shape) * 0.1).requires_grad_()

    x, w, b = leaf(64, 120), small(84, 120), leaf(84)
    xc, wc, bc = leaf(64, 16, 5, 5), small(120, 16, 5, 5), leaf(120)
    x1, w1, b1 = leaf(37, 1, 28, 28), small(6, 1, 5, 5), leaf(6)
    x3, w3, b3 = leaf(37, 6, 14, 14), small(16, 6, 5, 5), leaf(16)
    xs, ws, bs = leaf(37, 3, 11, 11), small(4, 3, 3, 3), leaf(4)
    cases = [
        (lambda: ops.linear(x, w, b, True), (x, w, b)),
        (lambda: ops.conv2d_sigmoid(xc, wc, bc), (xc, wc, bc)),
        (lambda: ops.conv2d_sigmoid_pool(x1, w1, b1, 2, 2)[0], (w1, b1)),
        (lambda: ops.conv2d_sigmoid_pool(x3, w3, b3, 0, 2)[0], (x3, w3, b3)),
        (lambda: ops.conv2d_sigmoid(xs, ws, bs, 2, 1), (xs, ws, bs)),
    ]
    threads = torch.get_num_threads()
    try:
        for fn, inputs in cases:
            grad = torch.randn_like(fn())
            grads = []
            for n in (1, 2):
                torch.set_num_threads(n)
                grads.append(torch.autograd.grad(fn(), inputs, grad))
            for one, two in zip(*grads):
                assert one.abs().max() > 1e-3  # a real gradient, not saturated zeros
                assert torch.equal(one, two)
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- special values


def test_nan_and_inf_propagate_like_torch(device):
    x = torch.randn(2, 1, 6, 6, device=device)
    x[0, 0, 1, 1] = float("nan")
    x[1, 0, 4, 4] = float("inf")
    x[1, 0, 0, 0] = -float("inf")
    weight, b = torch.randn(2, 1, 3, 3, device=device), torch.randn(2, device=device)
    torch.testing.assert_close(
        ops.conv2d_sigmoid(x, weight, b, 1, 1),
        torch.sigmoid(F.conv2d(x, weight, b, 1, 1)),
        equal_nan=True,
        atol=ATOL,
        rtol=RTOL,
    )
    torch.testing.assert_close(ops.avg_pool2d(x, 2), F.avg_pool2d(x, 2), equal_nan=True)
    h = x.flatten(1)[:, :9]
    w2 = torch.randn(3, 9, device=device)
    torch.testing.assert_close(
        ops.linear(h, w2, None, True), torch.sigmoid(F.linear(h, w2)), equal_nan=True, atol=ATOL, rtol=RTOL
    )


def test_sigmoid_saturates_like_torch(device):
    """Large pre-activations of both signs: our vectorized sigmoid must saturate to 0 and 1."""
    x = torch.linspace(-120, 120, 2 * 3 * 8 * 8, device=device).reshape(2, 3, 8, 8)
    weight = torch.zeros(5, 3, 1, 1, device=device)
    weight[:, 0] = torch.linspace(-1.5, 1.5, 5, device=device)[:, None, None]
    torch.testing.assert_close(
        ops.conv2d_sigmoid(x, weight, None), torch.sigmoid(F.conv2d(x, weight)), atol=ATOL, rtol=RTOL
    )


def test_zero_size_batch(device):
    x = torch.randn(0, 3, 8, 8, device=device, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, device=device, requires_grad=True)
    b = torch.randn(4, device=device, requires_grad=True)
    y = ops.conv2d_sigmoid(x, weight, b, 1, 1)
    assert y.shape == (0, 4, 8, 8)
    p = ops.avg_pool2d(y, 2)
    assert p.shape == (0, 4, 4, 4)
    z = ops.linear(p.flatten(1), torch.randn(5, 64, device=device), None, True)
    assert z.shape == (0, 5)
    gw, gb = torch.autograd.grad(z.sum(), (weight, b))
    assert torch.equal(gw, torch.zeros_like(gw)) and torch.equal(gb, torch.zeros_like(gb))


# ----------------------------------------------------------------------------- opcheck


def _opcheck_samples(device, requires_grad):
    def t(*shape):
        return torch.randn(*shape, device=device, requires_grad=requires_grad)

    return [
        (torch.ops.lenet_ext.conv2d_sigmoid.default, (t(3, 2, 9, 8), t(4, 2, 3, 3), t(4), 1, 1)),
        (torch.ops.lenet_ext.conv2d_sigmoid.default, (t(2, 16, 5, 5), t(7, 16, 5, 5), None, 1, 0)),
        (torch.ops.lenet_ext.avg_pool2d.default, (t(3, 2, 9, 8), 2, 2)),
        (torch.ops.lenet_ext.avg_pool2d.default, (t(1, 3, 7, 7), 3, 2)),
        (torch.ops.lenet_ext.linear.default, (t(5, 12), t(3, 12), t(3), True)),
        (torch.ops.lenet_ext.linear.default, (t(2, 4, 12), t(3, 12), None, False)),
    ] + (
        [  # CPU only
            (torch.ops.lenet_ext.conv2d_sigmoid_pool.default, (t(3, 2, 9, 8), t(4, 2, 3, 3), t(4), 1, 2)),
            (torch.ops.lenet_ext.conv2d_sigmoid_pool.default, (t(2, 3, 11, 9), t(5, 3, 3, 3), None, 0, 3)),
        ]
        if device == "cpu"
        else []
    )


def _backward_samples(device):
    x, w, b = torch.randn(3, 2, 9, 8, device=device), torch.randn(4, 2, 3, 3, device=device), torch.randn(4)
    y = ops.conv2d_sigmoid(x, w, b.to(device), 1, 1)
    h, lw = torch.randn(5, 12, device=device), torch.randn(3, 12, device=device)
    z = ops.linear(h, lw, None, True)
    return [
        (torch.ops.lenet_ext.conv2d_sigmoid_backward.default, (torch.randn_like(y), y, x, w, 1, 1, [True, True, True])),
        (
            torch.ops.lenet_ext.conv2d_sigmoid_backward.default,
            (torch.randn_like(y), y, x, w, 1, 1, [False, True, False]),
        ),
        (torch.ops.lenet_ext.avg_pool2d_backward.default, (torch.randn(3, 2, 4, 4, device=device), [3, 2, 9, 8], 2, 2)),
        (torch.ops.lenet_ext.linear_backward.default, (torch.randn_like(z), z, h, lw, True, [True, True, True])),
        (torch.ops.lenet_ext.linear_backward.default, (torch.randn_like(z), None, h, lw, False, [True, False, True])),
    ] + (
        [  # CPU only
            (
                torch.ops.lenet_ext.conv2d_sigmoid_pool_backward.default,
                (torch.randn(3, 4, 4, 4), torch.randn_like(y), y, x, w, 1, 2, [True, True, True]),
            ),
            (
                torch.ops.lenet_ext.conv2d_sigmoid_pool_backward.default,
                (torch.randn(3, 4, 4, 4), None, y, x, w, 1, 2, [True, False, True]),
            ),
        ]
        if device == "cpu"
        else []
    )


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_forward_ops(requires_grad, device):
    for op, args in _opcheck_samples(device, requires_grad):
        torch.library.opcheck(op, args)


def test_opcheck_backward_ops(device):
    for op, args in _backward_samples(device):
        torch.library.opcheck(op, args)


def test_backward_ops_compute_only_what_is_asked():
    x, w = torch.randn(2, 2, 6, 6), torch.randn(3, 2, 3, 3)
    y = ops.conv2d_sigmoid(x, w, None, 1, 0)
    gx, gw, gb = torch.ops.lenet_ext.conv2d_sigmoid_backward(torch.randn_like(y), y, x, w, 1, 0, [False, True, False])
    assert gx.numel() == 0 and gb.numel() == 0 and gw.shape == w.shape


# ----------------------------------------------------------------------------- conv + sigmoid + pool


def _conv_pool_reference(x, w, b, padding, pool):
    activation = torch.sigmoid(F.conv2d(x, w, b, 1, padding))
    return F.avg_pool2d(activation, pool), activation


# (N, C, H, W, O, K, padding, pool): LeNet's c1/s2 and c3/s4, odd sizes whose pooling drops a row and
# a column (floor mode), pool 3, and pool 1 on a 1x1 output.
CONV_POOL = [
    (4, 1, 28, 28, 6, 5, 2, 2),
    (3, 6, 14, 14, 16, 5, 0, 2),
    (2, 3, 11, 9, 4, 3, 1, 3),
    (5, 2, 9, 8, 3, 2, 0, 2),
    (3, 16, 5, 5, 7, 5, 0, 1),
]


@pytest.mark.parametrize("case", CONV_POOL, ids=str)
@pytest.mark.parametrize("which", ["both", "pooled", "activation"])
def test_conv2d_sigmoid_pool_matches_torch(case, which):
    """Forward and every gradient, with the gradient arriving through the pooled output, the
    activation or both."""
    n, c, h, w_, o, k, padding, pool = case
    x = torch.randn(n, c, h, w_, requires_grad=True)
    w = (torch.randn(o, c, k, k) / k).requires_grad_()
    b = torch.randn(o, requires_grad=True)
    pooled, activation = ops.conv2d_sigmoid_pool(x, w, b, padding, pool)
    ref_pooled, ref_activation = _conv_pool_reference(x, w, b, padding, pool)
    close(pooled, ref_pooled)
    close(activation, ref_activation)
    gp, ga = torch.randn_like(ref_pooled), torch.randn_like(ref_activation)

    def loss(p, a):
        return ((p * gp).sum() if which != "activation" else 0) + ((a * ga).sum() if which != "pooled" else 0)

    for g, r in zip(
        torch.autograd.grad(loss(pooled, activation), (x, w, b)),
        torch.autograd.grad(loss(ref_pooled, ref_activation), (x, w, b)),
    ):
        close(g, r)


@pytest.mark.parametrize("case", [(2, 2, 8, 7, 3, 3, 1, 2), (2, 3, 7, 7, 2, 2, 0, 3)], ids=str)
def test_conv2d_sigmoid_pool_gradcheck(case):
    n, c, h, w_, o, k, padding, pool = case
    args = [
        torch.randn(*shape, dtype=torch.float64, requires_grad=True) for shape in ((n, c, h, w_), (o, c, k, k), (o,))
    ]
    assert torch.autograd.gradcheck(lambda *a: ops.conv2d_sigmoid_pool(*a, padding, pool), args)


def test_conv2d_sigmoid_pool_partial_grads_and_no_bias():
    x, w = torch.randn(3, 6, 14, 14), torch.randn(16, 6, 5, 5, requires_grad=True)
    pooled, _ = ops.conv2d_sigmoid_pool(x, w, None, 0, 2)
    (gw,) = torch.autograd.grad(pooled.square().sum(), (w,))
    ref, _ = _conv_pool_reference(x, w, None, 0, 2)
    close(gw, torch.autograd.grad(ref.square().sum(), (w,))[0])


# ----------------------------------------------------------------------------- CPU instruction sets


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return set()


def cpu_has_avx2():
    return platform.machine().lower() in ("x86_64", "amd64") and {"avx2", "fma"} <= cpu_flags()


def cpu_has_avx512():
    return cpu_has_avx2() and {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= cpu_flags()


def test_cpu_isa_reported():
    """lenet_ext.cpu_isa() names the CPU kernels in use; LENET_EXT_CPU_ISA=base|avx2|avx512 asks for
    one set for every kernel (each only where the CPU has it); the default is avx2 with the AVX-512
    fused forward where the CPU has AVX-512 and VBMI2, else avx2 where it has that, else base.
    cpu_isas() names each kernel's set, and agrees."""
    want = os.environ.get("LENET_EXT_CPU_ISA")
    if want == "base":
        expected = "base"
    elif want == "avx512" and cpu_has_avx512():
        expected = "avx512"
    elif want not in ("avx2", "avx512") and cpu_has_avx512() and "avx512_vbmi2" in cpu_flags():
        expected = "avx2+avx512"
    else:
        expected = "avx2" if cpu_has_avx2() else "base"
    assert lenet_ext.cpu_isa() == expected
    isas = lenet_ext.cpu_isas()
    assert set(isas) == {
        "conv_forward",
        "conv_backward",
        "dense_forward",
        "dense_input_grad",
        "dense_weight_grad",
        "lenet5_forward",
    }
    if expected == "avx2+avx512":
        assert isas.pop("lenet5_forward") == "avx512" and set(isas.values()) == {"avx2"}
    else:
        assert set(isas.values()) == {expected}


@pytest.mark.slow  # a subprocess per instruction set
@pytest.mark.parametrize("isa", ["base", "avx2", "avx512"])
def test_every_instruction_set_matches_torch_too(isa):
    """This process runs one set of CPU kernels; each other one this CPU has goes through the same
    CPU parity tests (gradchecks and thread-count determinism included) in a fresh process."""
    if isa == lenet_ext.cpu_isa():
        pytest.skip(f"this process runs the {isa} kernels: the tests above covered them")
    if isa == "avx512" and not cpu_has_avx512():
        pytest.skip("this CPU has no AVX-512")
    env = dict(os.environ, LENET_EXT_CPU_ISA=isa)
    probe = subprocess.run(
        [sys.executable, "-c", "import lenet_ext; print(lenet_ext.cpu_isa())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.stdout.strip() != isa:
        pytest.skip(f"this CPU has no {isa} (the kernels in use: {probe.stdout.strip()})")
    here = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "(cpu or thread_count) and not opcheck and not instruction_set",
            os.path.join(here, "test_ops.py"),
            os.path.join(here, "test_model.py"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


# ----------------------------------------------------------------------------- fused LeNet-5 forward


def lenet_params(dtype=torch.float32, classes=10):
    model = lenet_ext.LeNet5("ext", num_classes=classes).to(dtype)
    return model, tuple(p.detach() for p in model._fused_params())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3, 257])
def test_lenet5_forward_matches_the_layers(batch, dtype):
    """ops.lenet5_forward == the layer-by-layer ops == torch's layers, on random weights and images."""
    model, params = lenet_params(dtype, classes=7)
    ref = lenet_ext.LeNet5("torch", num_classes=7).to(dtype)
    ref.load_state_dict(model.state_dict())
    x = torch.rand(batch, 1, 28, 28, dtype=dtype) * 2 - 0.5
    fused = ops.lenet5_forward(x, params)
    with torch.no_grad():
        layered = model._last(x, "logits")
        expected = ref(x)
    if dtype == torch.float64:
        torch.testing.assert_close(fused, expected, atol=1e-12, rtol=1e-10)
    else:
        close(fused, expected)
    close(fused, layered) if dtype == torch.float32 else torch.testing.assert_close(fused, layered)


def test_lenet5_forward_noncontiguous_and_empty():
    model, params = lenet_params()
    x = torch.rand(5, 1, 28, 56)[..., ::2]
    close(ops.lenet5_forward(x, params), ops.lenet5_forward(x.contiguous(), params))
    assert ops.lenet5_forward(torch.rand(0, 1, 28, 28), params).shape == (0, 10)


def test_opcheck_lenet5_forward():
    _, params = lenet_params()
    torch.library.opcheck(torch.ops.lenet_ext.lenet5_forward.default, (torch.rand(3, 1, 28, 28), *params))


def test_lenet5_forward_binding_is_the_op():
    """ops.lenet5_forward calls the op from C++ (lenet_ext._C.lenet5_forward, through the
    dispatcher): the bits torch.ops gives, parameters taken as tensors, the op's own errors."""
    op = torch.ops.lenet_ext.lenet5_forward.default
    model, params = lenet_params()
    x = torch.rand(3, 1, 28, 28)
    expected = op(x, *params)
    assert torch.equal(lenet_ext._C.lenet5_forward(x, *params), expected)
    assert torch.equal(lenet_ext._C.lenet5_forward(x, *model._fused_params()), expected)  # nn.Parameter
    assert torch.equal(ops.lenet5_forward(x, params), expected)
    for bad in (x.double(), x[:, :, :27], x.to("meta")):
        with pytest.raises((TypeError, ValueError)) as theirs:
            op(bad, *params)
        with pytest.raises(theirs.type) as ours:
            lenet_ext._C.lenet5_forward(bad, *params)
        assert str(ours.value) == str(theirs.value)
    # Not its call: a wrong count or a non-tensor (torch.ops then raises the schema's error).
    assert lenet_ext._C.lenet5_forward(x, *params[:-1]) is NotImplemented
    assert lenet_ext._C.lenet5_forward(x, *params[:-1], 1.0) is NotImplemented
    with pytest.raises(ValueError, match="10 parameters"):
        ops.lenet5_forward(x, params[:-1])


def test_lenet5_forward_binding_leaves_overrides_to_torch_ops():
    """Where __torch_function__ must see the call (a mode, a tensor subclass), the binding declines
    and torch.ops takes it; dispatch modes (below the dispatcher's entry) see it either way."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    op = torch.ops.lenet_ext.lenet5_forward.default
    _, params = lenet_params()
    x = torch.rand(2, 1, 28, 28)
    expected = op(x, *params)
    seen = []

    class FunctionMode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    with FunctionMode():
        assert lenet_ext._C.lenet5_forward(x, *params) is NotImplemented
        assert torch.equal(ops.lenet5_forward(x, params), expected)
    assert op in seen

    class Tagged(torch.Tensor):
        calls: list = []

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            cls.calls.append(func)
            return super().__torch_function__(func, types, args, kwargs)

    tagged = x.as_subclass(Tagged)
    assert lenet_ext._C.lenet5_forward(tagged, *params) is NotImplemented
    out = ops.lenet5_forward(tagged, params)
    assert op in Tagged.calls and type(out) is Tagged and torch.equal(out.as_subclass(torch.Tensor), expected)

    seen.clear()

    class DispatchMode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    with DispatchMode():
        assert torch.equal(lenet_ext._C.lenet5_forward(x, *params), expected)
    assert op in seen


# ----------------------------------------------------------------------------- fused LeNet-5 training op


def train_params(dtype=torch.float32, classes=10):
    model, params = lenet_params(dtype, classes)
    return tuple(p.clone().requires_grad_() for p in params)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 5, 33])
def test_lenet5_train_forward_matches_the_layers(batch, dtype):
    """ops.lenet5_train_forward runs the layer ops' kernels in the layers' order: its logits,
    activations and every gradient (images and the ten parameters) have the same bits as the layer
    ops composed under autograd, and match torch's layers within the float32 tolerance."""
    params = train_params(dtype, classes=7)
    x = (torch.rand(batch, 1, 28, 28, dtype=dtype) * 2 - 0.5).requires_grad_()
    logits, c1, s2, c3, s4, c5, f6 = ops.lenet5_train_forward(x, params)
    assert logits.requires_grad and not any(t.requires_grad for t in (c1, s2, c3, s4, c5, f6))

    c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, ow, ob = params
    l_s2, l_c1 = ops.conv2d_sigmoid_pool(x, c1w, c1b, 2, 2)
    l_s4, l_c3 = ops.conv2d_sigmoid_pool(l_s2, c3w, c3b, 0, 2)
    l_c5 = ops.conv2d_sigmoid(l_s4, c5w, c5b)
    l_f6 = ops.linear(l_c5.flatten(1), f6w, f6b, True)
    l_logits = ops.linear(l_f6, ow, ob, False)
    for fused, layered in zip((logits, c1, s2, c3, s4, c5, f6), (l_logits, l_c1, l_s2, l_c3, l_s4, l_c5, l_f6)):
        assert torch.equal(fused, layered.detach())

    grad = torch.randn_like(logits)
    fused_grads = torch.autograd.grad(logits, (x, *params), grad)
    layer_grads = torch.autograd.grad(l_logits, (x, *params), grad)
    for fused, layered in zip(fused_grads, layer_grads):
        assert fused.abs().max() > 0
        assert torch.equal(fused, layered)

    ref = lenet_ext.LeNet5("torch", num_classes=7).to(dtype)
    with torch.no_grad():
        for p, value in zip(ref._fused_params(), params):
            p.copy_(value)
    ref_logits = ref(x)
    ref_grads = torch.autograd.grad(ref_logits, (x, *ref._fused_params()), grad)
    close(logits, ref_logits.detach(), dtype)
    for fused, expected in zip(fused_grads, ref_grads):
        close(fused, expected, dtype)


def test_lenet5_train_forward_gradcheck():
    params = train_params(torch.float64, classes=3)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *p: ops.lenet5_train_forward(x, p)[0], (x, *params), fast_mode=True)


def test_lenet5_train_forward_partial_grads():
    """Only what requires grad gets a gradient; frozen layers and the images get none."""
    params = train_params()
    frozen = [p.requires_grad_(i >= 6) for i, p in enumerate(params)]  # only f6 and the output layer train
    x = torch.rand(4, 1, 28, 28)
    logits = ops.lenet5_train_forward(x, frozen)[0]
    logits.sum().backward()
    assert x.grad is None
    assert all(p.grad is None for p in frozen[:6]) and all(p.grad is not None for p in frozen[6:])


def test_opcheck_lenet5_train_ops():
    params = train_params()
    x = torch.rand(3, 1, 28, 28)
    torch.library.opcheck(torch.ops.lenet_ext.lenet5_train_forward.default, (x, *params))
    torch.library.opcheck(torch.ops.lenet_ext.lenet5_train_forward.default, (x.requires_grad_(), *params))
    with torch.no_grad():
        logits, c1, s2, c3, s4, c5, f6 = ops.lenet5_train_forward(x, params)
    c1w, _, c3w, _, c5w, _, f6w, _, ow, _ = (p.detach() for p in params)
    for images_grad in (True, False):
        torch.library.opcheck(
            torch.ops.lenet_ext.lenet5_train_backward.default,
            (torch.randn_like(logits), x.detach(), c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, ow, images_grad),
        )


def test_model_trains_through_one_node():
    """LeNet5(impl="ext") on the CPU with gradients: one autograd node for the whole network."""
    model = lenet_ext.LeNet5("ext")
    logits = model(torch.rand(2, 1, 28, 28))
    assert "LeNet5Train" in logits.grad_fn.name()
