"""lenet_ext's newer CUDA kernels, compiled for the CPU by cpp_tests/cuda_emulation.cpp and run
there, against torch: the fused ops' (conv2d_sigmoid_pool, lenet5_forward, lenet5_train_forward /
backward) and the second-generation per-op kernels (conv2d_sigmoid, and the tiled products of
linear and c5), with the first generation beside them. Their indexing and arithmetic are checked on
every machine, GPU or not (test_cuda.py runs the same kernels on a device). float64 to near
machine precision, float32 within the usual tolerance."""

import os

import pytest
import torch
import torch.nn.functional as F

import lenet_ext
from lenet_ext import ops

HERE = os.path.dirname(os.path.abspath(__file__))
F32 = dict(atol=1e-5, rtol=1e-4)
F64 = dict(atol=1e-12, rtol=1e-10)


pytestmark = pytest.mark.slow  # compiles the emulator (about a minute), then runs blocks of fibers

# The emulated module is instrumented with -fsanitize=thread, whose hooks emulation_runtime.cpp
# provides (checking shared memory) in place of libtsan; the runtime itself is not instrumented.
INSTRUMENT = ["-fsanitize=thread", "--param", "tsan-instrument-func-entry-exit=0"]


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    import subprocess

    from torch.utils.cpp_extension import load

    build = os.environ.get("LENET_EXT_EMULATION_BUILD") or str(tmp_path_factory.mktemp("emulation-build"))
    os.makedirs(build, exist_ok=True)
    runtime = os.path.join(build, "emulation_runtime.o")
    subprocess.run(
        [
            os.environ.get("CXX", "c++"),
            "-O2",
            "-std=c++20",
            "-fPIC",
            "-c",
            os.path.join(HERE, "..", "cpp_tests", "emulation_runtime.cpp"),
            "-o",
            runtime,
        ],
        check=True,
    )
    module = load(
        name="lenet_ext_cuda_emulation",
        sources=[os.path.join(HERE, "..", "cpp_tests", "cuda_emulation.cpp")],
        extra_cflags=["-O2", "-std=c++20", *INSTRUMENT],
        extra_ldflags=[runtime],
        build_directory=build,
        verbose=False,
    )
    module.set_thread_order("index", 0)
    module.set_shared_checks(True, True)
    return module


def tol(dtype):
    return F64 if dtype == torch.float64 else F32


def close(actual, expected, dtype):
    t = tol(dtype)
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, atol=t["atol"] * scale, rtol=t["rtol"])


CONV_POOL = [  # (N, C, H, W, O, K, padding, pool)
    (3, 1, 28, 28, 6, 5, 2, 2),  # LeNet's c1/s2
    (3, 6, 14, 14, 16, 5, 0, 2),  # c3/s4
    (2, 3, 11, 9, 4, 3, 1, 2),  # odd: the pooling drops a row and a column
    (2, 2, 10, 10, 3, 3, 0, 3),  # pool 3, remainder 2
    (1, 2, 7, 6, 2, 2, 0, 1),  # pool 1
    (0, 2, 8, 8, 3, 3, 0, 2),  # empty batch
]


@pytest.mark.parametrize("shape", CONV_POOL, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_sigmoid_pool_kernels(emu, shape, dtype, bias):
    n, c, h, w, o, k, pad, pool = shape
    x = torch.randn(n, c, h, w, dtype=dtype, requires_grad=True)
    wt = torch.randn(o, c, k, k, dtype=dtype, requires_grad=True)
    b = torch.randn(o, dtype=dtype, requires_grad=True) if bias else None
    act = torch.sigmoid(F.conv2d(x, wt, b, 1, pad))
    pooled = F.avg_pool2d(act, pool)
    e_pooled, e_act = emu.conv_pool_forward(x.detach(), wt.detach(), b.detach() if bias else None, pad, pool)
    close(e_pooled, pooled.detach(), dtype)
    close(e_act, act.detach(), dtype)
    for with_act_grad in (False, True):
        gp = torch.randn_like(pooled)
        ga = torch.randn_like(act) if with_act_grad else None
        inputs = (x, wt) + ((b,) if bias else ())
        grads = torch.autograd.grad(
            [pooled] + ([act] if with_act_grad else []),
            inputs,
            [gp] + ([ga] if with_act_grad else []),
            retain_graph=True,
        )
        for v2 in (False, True):
            got = emu.conv_pool_backward(gp, ga, e_act, x.detach(), wt.detach(), pad, pool, [True, True, bias], v2)
            for g, r in zip(got, grads):
                close(g, r, dtype)
    only_w = emu.conv_pool_backward(gp, None, e_act, x.detach(), wt.detach(), pad, pool, [False, True, False], True)
    assert only_w[0].numel() == 0 and only_w[2].numel() == 0 and only_w[1].shape == wt.shape


def lenet(dtype, classes=10, seed=0):
    torch.manual_seed(seed)
    model = lenet_ext.LeNet5("torch", num_classes=classes).to(dtype)
    with torch.no_grad():  # larger biases than torch's init, so that every term matters
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    params = [model.get_parameter(name).detach() for name in ops.LENET5_PARAMS]
    return model, params


@pytest.mark.parametrize("n", [1, 3, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lenet5_forward_kernel(emu, n, dtype):
    model, params = lenet(dtype)
    x = torch.rand(n, 1, 28, 28, dtype=dtype)
    acts = model.activations(x)
    logits, *saved = emu.lenet5_forward(x, params, True)
    close(logits, acts["logits"].detach(), dtype)
    for name, got in zip(("c1", "s2", "c3", "s4", "c5", "f6"), saved):
        close(got, acts[name].detach().reshape(got.shape), dtype)
    close(emu.lenet5_forward(x, params, False)[0], logits, dtype)
    # against our CPU op too
    close(logits, ops.lenet5_forward(x, params), dtype)


def test_lenet5_forward_kernel_other_class_counts(emu):
    for classes in (1, 7, 300):
        model, params = lenet(torch.float64, classes=classes, seed=classes)
        x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
        close(emu.lenet5_forward(x, params, False)[0], model(x).detach(), torch.float64)


# 65 and 130 images: two and three chunks of the convolutions' partial sums.
@pytest.mark.parametrize(
    "n,dtype,images_grad",
    [
        (1, torch.float32, True),
        (3, torch.float32, False),
        (65, torch.float32, True),
        (1, torch.float64, False),
        (3, torch.float64, True),
        (65, torch.float64, False),
        (130, torch.float64, True),
    ],
    ids=str,
)
def test_lenet5_train_backward_kernels(emu, n, dtype, images_grad):
    model, params = lenet(dtype, seed=n)
    x = torch.rand(n, 1, 28, 28, dtype=dtype, requires_grad=images_grad)
    logits = model(x)
    g = torch.randn_like(logits)
    wrt = ([x] if images_grad else []) + [model.get_parameter(k) for k in ops.LENET5_PARAMS]
    expected = torch.autograd.grad(logits, wrt, g)
    _, c1, s2, c3, s4, c5, f6 = emu.lenet5_forward(x.detach(), params, True)
    c1w, _, c3w, _, c5w, _, f6w, _, outw, _ = params
    got = emu.lenet5_train_backward(g, x.detach(), c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, outw, images_grad)
    if not images_grad:
        assert got[0].numel() == 0
        got = got[1:]
    for name, a, b in zip((["images"] if images_grad else []) + list(ops.LENET5_PARAMS), got, expected):
        assert a.shape == b.shape, name
        close(a, b, dtype)
    # and our CPU backward op agrees
    cpu = torch.ops.lenet_ext.lenet5_train_backward(
        g, x.detach(), c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, outw, images_grad
    )
    for a, b in zip(got, cpu[0 if images_grad else 1 :]):
        close(a, b, dtype)


def test_lenet5_train_backward_empty_batch(emu):
    _, params = lenet(torch.float32)
    x = torch.rand(0, 1, 28, 28)
    _, c1, s2, c3, s4, c5, f6 = emu.lenet5_forward(x, params, True)
    c1w, _, c3w, _, c5w, _, f6w, _, outw, _ = params
    got = emu.lenet5_train_backward(torch.zeros(0, 10), x, c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, outw, True)
    assert got[0].shape == (0, 1, 28, 28)
    assert all(t.shape == p.shape and not t.abs().sum() for t, p in zip(got[1:], params))


CONV = [  # (N, C, H, W, O, K, stride, padding)
    (3, 1, 28, 28, 6, 5, 1, 2),  # c1
    (3, 6, 14, 14, 16, 5, 1, 0),  # c3
    (5, 16, 5, 5, 120, 5, 1, 0),  # c5: the whole input, a dense layer in v2
    (2, 3, 11, 9, 5, 3, 2, 1),  # strided, padded, odd; 5 channels: a partial group of 4
    (40, 2, 12, 12, 3, 3, 1, 1),  # enough images for several chunks of v2's weight gradient
]


@pytest.mark.parametrize("shape", CONV, ids=str)
@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_sigmoid_kernels(emu, shape, v2, dtype):
    n, c, h, w, o, k, stride, pad = shape
    x = torch.randn(n, c, h, w, dtype=dtype, requires_grad=True)
    wt = torch.randn(o, c, k, k, dtype=dtype, requires_grad=True)
    b = torch.randn(o, dtype=dtype, requires_grad=True)
    pre = F.conv2d(x, wt, b, stride, pad)
    close(emu.conv_forward(x.detach(), wt.detach(), b.detach(), stride, pad, v2), torch.sigmoid(pre).detach(), dtype)
    close(
        emu.conv_forward(x.detach(), wt.detach(), None, stride, pad, v2),
        torch.sigmoid(F.conv2d(x, wt, None, stride, pad)).detach(),
        dtype,
    )
    g = torch.randn_like(pre)
    expected = torch.autograd.grad(pre, (x, wt, b), g)
    got = emu.conv_backward_from_g(g, x.detach(), wt.detach(), stride, pad, [True, True, True], v2)
    for a, r in zip(got, expected):
        close(a, r, dtype)
    only_bias = emu.conv_backward_from_g(g, x.detach(), wt.detach(), stride, pad, [False, False, True], v2)
    close(only_bias[2], expected[2], dtype)


@pytest.mark.parametrize("m,k,o", [(1, 120, 84), (37, 84, 10), (64, 400, 120), (3, 17, 5), (0, 8, 4)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tiled_dense_products(emu, m, k, o, dtype):
    x = torch.randn(m, k, dtype=dtype)
    w = torch.randn(o, k, dtype=dtype)
    b = torch.randn(o, dtype=dtype)
    for sig in (False, True):
        ref = F.linear(x, w, b)
        close(emu.dense_forward(x, w, b, sig), torch.sigmoid(ref) if sig else ref, dtype)
    close(emu.dense_forward(x, w, None, False), F.linear(x, w), dtype)
    g = torch.randn(m, o, dtype=dtype)
    dx, dw, db = emu.dense_backward(g, x, w)
    close(dx, g @ w, dtype)
    close(dw, g.t() @ x, dtype)
    close(db, g.sum(0), dtype)


# ------------------------------------------------------------------------------------------
# The emulator's own checks: thread order, barriers, shared memory.


def every_kernel(emu, dtype):
    """Every emulated launch sequence once, on small odd shapes: their outputs, in order."""
    torch.manual_seed(5)
    out = []
    x = torch.randn(3, 2, 11, 9, dtype=dtype)
    w = torch.randn(4, 2, 3, 3, dtype=dtype)
    b = torch.randn(4, dtype=dtype)
    pooled, act = emu.conv_pool_forward(x, w, b, 1, 2)
    out += [pooled, act]
    for v2 in (False, True):
        out += list(
            emu.conv_pool_backward(
                torch.randn_like(pooled), torch.randn_like(act), act, x, w, 1, 2, [True, True, True], v2
            )
        )
        xs = torch.randn(40, 2, 12, 12, dtype=dtype)
        ws = torch.randn(5, 2, 3, 3, dtype=dtype)
        y = emu.conv_forward(xs, ws, torch.randn(5, dtype=dtype), 1, 1, v2)
        out += [y, *emu.conv_backward_from_g(torch.randn_like(y), xs, ws, 1, 1, [True, True, True], v2)]
    xd, wd = torch.randn(37, 50, dtype=dtype), torch.randn(19, 50, dtype=dtype)
    yd = emu.dense_forward(xd, wd, torch.randn(19, dtype=dtype), True)
    out += [yd, *emu.dense_backward(torch.randn_like(yd), xd, wd)]
    _, params = lenet(dtype)
    images = torch.rand(3, 1, 28, 28, dtype=dtype)
    logits, *saved = emu.lenet5_forward(images, params, True)
    c1w, _, c3w, _, c5w, _, f6w, _, outw, _ = params
    out += [logits, *saved]
    out += list(emu.lenet5_train_backward(torch.randn_like(logits), images, *saved, c1w, c3w, c5w, f6w, outw, True))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_kernel_gives_the_same_bits_in_any_thread_order(emu, dtype):
    """A kernel whose result depends on the order its threads run in between two barriers has a
    race: reversed and shuffled orders must give bitwise the results of index order."""
    reference = every_kernel(emu, dtype)
    try:
        for order, seed in (("reversed", 0), ("shuffled", 1), ("shuffled", 2)):
            emu.set_thread_order(order, seed)
            for a, b in zip(every_kernel(emu, dtype), reference, strict=True):
                assert torch.equal(a, b), order
    finally:
        emu.set_thread_order("index", 0)


def test_a_missing_barrier_is_a_race(emu):
    values = torch.randn(256, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="shared-memory race: thread .* since the last barrier"):
        emu.broken_kernel("sum_without_barrier", values)
    emu.set_shared_checks(False, True)  # without the race check, the thread order changes the sum
    try:
        sums = set()
        for order, seed in (("index", 0), ("reversed", 0), ("shuffled", 3)):
            emu.set_thread_order(order, seed)
            sums.add(float(emu.broken_kernel("sum_without_barrier", values)))
        assert len(sums) > 1
    finally:
        emu.set_thread_order("index", 0)
        emu.set_shared_checks(True, True)


def test_a_barrier_in_a_branch_is_divergent(emu):
    with pytest.raises(RuntimeError, match="__syncthreads not reached by every thread"):
        emu.broken_kernel("barrier_in_branch", torch.randn(256, dtype=torch.float64))


def test_an_uninitialised_shared_read_is_caught_and_reads_nan(emu):
    values = torch.randn(256, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="uninitialised shared read: thread .* that no thread of the block"):
        emu.broken_kernel("uninitialised_read", values)
    emu.set_shared_checks(True, False)  # unchecked, the unwritten half reads as NaN (the fill)
    try:
        out = emu.broken_kernel("uninitialised_read", values)
    finally:
        emu.set_shared_checks(True, True)
    assert torch.isnan(out[:128]).all() and torch.equal(out[128:], values.flip(0)[128:])
