"""CUDA-only properties of our kernels. The parity tests in test_ops.py and test_model.py
run on CUDA too (parametrized over the device); these cover what only a GPU has: agreement
with our CPU kernels, CUDA graphs, non-default streams, determinism, device mismatches and
that no cuDNN/cuBLAS kernel runs. Every test here skips cleanly without a GPU."""

import pytest
import torch
import torch.nn.functional as F

import lenet_ext
from lenet_ext import ops

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or "cuda" not in lenet_ext.backends(),
    reason="needs a CUDA GPU and lenet_ext built with CUDA",
)

ATOL, RTOL = 1e-5, 1e-4


def close(a, b):
    scale = max(1.0, b.abs().max().item())
    torch.testing.assert_close(a, b, atol=ATOL * scale, rtol=RTOL)


def lenet_layers(batch, device, requires_grad=True):
    """Random inputs at each of LeNet-5's layer shapes."""

    def t(*shape):
        return torch.randn(*shape, device=device, requires_grad=requires_grad)

    return {
        "c1": (t(batch, 1, 28, 28), t(6, 1, 5, 5), t(6), 1, 2),
        "c3": (t(batch, 6, 14, 14), t(16, 6, 5, 5), t(16), 1, 0),
        "c5": (t(batch, 16, 5, 5), t(120, 16, 5, 5), t(120), 1, 0),
    }


@pytest.mark.parametrize("batch", [1, 3, 255, 257, 1000])
def test_cuda_matches_our_cpu_kernels(batch, generation):
    for x, w, b, s, p in lenet_layers(batch, "cpu").values():
        xc, wc, bc = (t.detach().cuda().requires_grad_() for t in (x, w, b))
        y, yc = ops.conv2d_sigmoid(x, w, b, s, p), ops.conv2d_sigmoid(xc, wc, bc, s, p)
        close(yc.cpu(), y)
        g = torch.randn_like(y)
        for a, c in zip(torch.autograd.grad(y, (x, w, b), g), torch.autograd.grad(yc, (xc, wc, bc), g.cuda())):
            close(c.cpu(), a)
        if y.shape[-1] >= 2:  # c5's output is 1x1: nothing to pool
            close(ops.avg_pool2d(yc, 2).cpu(), ops.avg_pool2d(y, 2))
    for k, o, sig in ((120, 84, True), (84, 10, False), (37, 19, True)):  # f6, the output, tile edges
        h, w, b = (torch.randn(*shape, requires_grad=True) for shape in ((batch, k), (o, k), (o,)))
        hc, wc, bc = (t.detach().cuda().requires_grad_() for t in (h, w, b))
        y, yc = ops.linear(h, w, b, sig), ops.linear(hc, wc, bc, sig)
        close(yc.cpu(), y)
        g = torch.randn_like(y)
        for a, c in zip(torch.autograd.grad(y, (h, w, b), g), torch.autograd.grad(yc, (hc, wc, bc), g.cuda())):
            close(c.cpu(), a)


@pytest.mark.parametrize("shape", [(5, 3, 9, 11, 7, 3, 2, 1), (4, 6, 12, 12, 5, 5, 1, 2), (2, 16, 5, 5, 9, 5, 0, 1)])
def test_per_op_kernels_gradcheck_float64(shape, generation):
    """float64 gradcheck of the layer ops on both kernel generations: strides, padding, channel
    counts that are not multiples of the channel group, a whole-input window (c5's case)."""
    from torch.autograd import gradcheck

    n, c, h, w_, o, k, pad, stride = shape
    d = dict(device="cuda", dtype=torch.float64, requires_grad=True)
    x, w, b = torch.randn(n, c, h, w_, **d), torch.randn(o, c, k, k, **d), torch.randn(o, **d)
    assert gradcheck(lambda *t: ops.conv2d_sigmoid(*t, stride, pad), (x, w, b))
    h2, w2, b2 = torch.randn(n, 21, **d), torch.randn(18, 21, **d), torch.randn(18, **d)
    assert gradcheck(lambda *t: ops.linear(*t, True), (h2, w2, b2))


def test_model_cuda_matches_cpu_and_torch():
    ext = lenet_ext.LeNet5("ext")
    ref = lenet_ext.LeNet5("torch")
    ref.load_state_dict(ext.state_dict())
    x = torch.rand(129, 1, 28, 28)
    close(ext.cuda()(x.cuda()).cpu(), ext.cpu()(x))
    close(ext.cuda()(x.cuda()), ref.cuda()(x.cuda()))


def _train_grads(device, seed=0):
    torch.manual_seed(seed)
    model = lenet_ext.LeNet5("ext").to(device)
    x = torch.rand(300, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (300,), device=device)
    F.cross_entropy(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_gradients_are_bitwise_deterministic(generation):
    first = _train_grads("cuda")
    for _ in range(3):
        for a, b in zip(first, _train_grads("cuda")):
            assert torch.equal(a, b)


def test_non_default_stream():
    x, w, b, s, p = lenet_layers(64, "cuda", requires_grad=False)["c3"]
    expected = ops.conv2d_sigmoid(x, w, b, s, p)
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = ops.conv2d_sigmoid(x, w, b, s, p)
        pooled = ops.avg_pool2d(out, 2)
        lin = ops.linear(pooled.flatten(1), torch.ones(10, 400, device="cuda"), None, True)
    stream.synchronize()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(pooled, F.avg_pool2d(expected, 2))
    close(lin, torch.sigmoid(F.avg_pool2d(expected, 2).flatten(1).sum(1, keepdim=True).expand(-1, 10)))


def test_cuda_graph_capture_and_replay():
    model = lenet_ext.LeNet5("ext").cuda()
    static_x = torch.rand(32, 1, 28, 28, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):  # warm-up outside the capture
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = model(static_x)
    for _ in range(3):
        new_x = torch.rand(32, 1, 28, 28, device="cuda")
        static_x.copy_(new_x)
        graph.replay()
        torch.cuda.synchronize()
        with torch.no_grad():
            torch.testing.assert_close(static_out, model(new_x))


def test_compile_reduce_overhead_training_matches_eager():
    torch._dynamo.reset()
    model = lenet_ext.LeNet5("ext").cuda()
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    x, y = torch.rand(64, 1, 28, 28, device="cuda"), torch.randint(0, 10, (64,), device="cuda")
    for _ in range(3):
        model.zero_grad()
        F.cross_entropy(compiled(x), y).backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for a, p in zip(compiled_grads, model.parameters()):
        close(a, p.grad)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ops.conv2d_sigmoid(torch.randn(2, 1, 8, 8, device="cuda"), torch.randn(3, 1, 3, 3)),
        lambda: ops.conv2d_sigmoid(
            torch.randn(2, 1, 8, 8, device="cuda"), torch.randn(3, 1, 3, 3, device="cuda"), torch.randn(3)
        ),
        lambda: ops.linear(torch.randn(2, 5, device="cuda"), torch.randn(3, 5)),
        lambda: ops.linear(torch.randn(2, 5), torch.randn(3, 5, device="cuda")),
    ],
    ids=["conv weight on cpu", "conv bias on cpu", "linear weight on cpu", "linear input on cpu"],
)
def test_device_mismatch_is_a_clear_error(call):
    with pytest.raises(ValueError, match="same device"):
        call()


def test_model_on_wrong_device_is_a_clear_error():
    model = lenet_ext.LeNet5("ext")  # on the CPU
    with pytest.raises(ValueError, match="same device"):
        model(torch.rand(2, 1, 28, 28, device="cuda"))


def _kernels_of_a_step():
    """The profiler's names for one forward and backward of LeNet5(impl="ext") on CUDA, after
    asserting that none is a cuDNN or cuBLAS kernel or a torch layer op."""
    model = lenet_ext.LeNet5("ext").cuda()
    x = torch.rand(64, 1, 28, 28, device="cuda")
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        model.zero_grad()
        model(x).sum().backward()
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages()]
    forbidden = [
        n
        for n in names
        if any(
            s in n.lower()
            for s in ("cudnn", "cublas", "gemm", "aten::conv", "aten::mm", "aten::addmm", "aten::avg_pool")
        )
    ]
    assert not forbidden, forbidden
    return names


def test_only_our_kernels_run():
    """Forward and backward of LeNet5(impl="ext") on CUDA launch no cuDNN or cuBLAS kernel."""
    names = _kernels_of_a_step()
    assert any("conv2d_sigmoid_forward_kernel" in n for n in names), names


# ------------------------------------------------------------------------------------------------
# The fused ops' CUDA kernels (conv2d_sigmoid_pool, lenet5_forward, lenet5_train_forward/backward).
# Their arithmetic is also checked without a GPU, by tests/test_cuda_emulated.py.
# ------------------------------------------------------------------------------------------------

BATCHES = [1, 7, 64, 257, 1024]
F64 = dict(atol=1e-12, rtol=1e-10)


def close_for(dtype):
    def check(a, b):
        if dtype == torch.float64:
            torch.testing.assert_close(a, b, **F64)
        else:
            close(a, b)

    return check


@pytest.fixture
def fused():
    """The v2 CUDA kernels (as with LENET_EXT_CUDA_KERNELS=v2): the fused ops in the model, the
    second-generation per-op kernels."""
    before = lenet_ext.cuda_kernels()
    lenet_ext.cuda_kernels("v2")
    yield
    lenet_ext.cuda_kernels(before)


@pytest.fixture(params=["v1", "v2"])
def generation(request):
    """Each generation of the per-op kernels in turn."""
    before = lenet_ext.cuda_kernels()
    lenet_ext.cuda_kernels(request.param)
    yield request.param
    lenet_ext.cuda_kernels(before)


def lenet_params(dtype, device="cuda", seed=0):
    torch.manual_seed(seed)
    model = lenet_ext.LeNet5("torch").to(device, dtype)
    return model, [model.get_parameter(name) for name in ops.LENET5_PARAMS]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_network_ops_match_torch_and_cpu(batch, dtype):
    check = close_for(dtype)
    model, params = lenet_params(dtype)
    x = torch.rand(batch, 1, 28, 28, device="cuda", dtype=dtype)
    detached = [p.detach() for p in params]
    with torch.no_grad():
        ref = model.activations(x)
        logits = ops.lenet5_forward(x, detached)
    check(logits, ref["logits"])
    check(logits.cpu(), ops.lenet5_forward(x.cpu(), [p.cpu() for p in detached]))
    out = ops.lenet5_train_forward(x, detached)
    for name, got in zip(("logits", "c1", "s2", "c3", "s4", "c5", "f6"), out):
        check(got, ref[name].reshape(got.shape))
    # Gradients through the one autograd node against the torch layers' and our CPU op's.
    xg = x.clone().requires_grad_(True)
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    g = torch.randn(batch, 10, device="cuda", dtype=dtype)
    ours = torch.autograd.grad(ops.lenet5_train_forward(xg, leaves)[0], [xg] + leaves, g)
    xr = x.clone().requires_grad_(True)
    theirs = torch.autograd.grad(model(xr), [xr] + _ordered(model), g)
    for a, b in zip(ours, theirs):
        check(a, b)
    xc = x.cpu().requires_grad_(True)
    leaves_cpu = [p.detach().cpu().requires_grad_(True) for p in params]
    cpu = torch.autograd.grad(ops.lenet5_train_forward(xc, leaves_cpu)[0], [xc] + leaves_cpu, g.cpu())
    for a, b in zip(ours, cpu):
        check(a.cpu(), b)


def _ordered(model):
    return [model.get_parameter(name) for name in ops.LENET5_PARAMS]


@pytest.mark.parametrize(
    "shape",
    [(3, 1, 28, 28, 6, 5, 2, 2), (257, 6, 14, 14, 16, 5, 0, 2), (2, 3, 11, 9, 4, 3, 1, 2), (2, 2, 10, 10, 3, 3, 0, 3)],
    ids=str,
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_sigmoid_pool_cuda(shape, dtype):
    check = close_for(dtype)
    n, c, h, w, o, k, pad, pool = shape
    x = torch.randn(n, c, h, w, device="cuda", dtype=dtype, requires_grad=True)
    wt = torch.randn(o, c, k, k, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(o, device="cuda", dtype=dtype, requires_grad=True)
    pooled, act = ops.conv2d_sigmoid_pool(x, wt, b, pad, pool)
    ref_act = torch.sigmoid(F.conv2d(x, wt, b, 1, pad))
    ref_pooled = F.avg_pool2d(ref_act, pool)
    check(pooled, ref_pooled)
    check(act, ref_act)
    gp, ga = torch.randn_like(pooled), torch.randn_like(act)
    ours = torch.autograd.grad([pooled, act], [x, wt, b], [gp, ga], retain_graph=True)
    theirs = torch.autograd.grad([ref_pooled, ref_act], [x, wt, b], [gp, ga])
    for a, r in zip(ours, theirs):
        check(a, r)
    cpu_inputs = [t.detach().cpu().requires_grad_(True) for t in (x, wt, b)]
    cp, ca = ops.conv2d_sigmoid_pool(*cpu_inputs, pad, pool)
    cpu = torch.autograd.grad([cp, ca], cpu_inputs, [gp.cpu(), ga.cpu()])
    for a, r in zip(ours, cpu):
        check(a.cpu(), r)


def test_fused_ops_gradcheck_float64():
    from torch.autograd import gradcheck

    d = dict(device="cuda", dtype=torch.float64, requires_grad=True)
    x, w, b = torch.randn(2, 2, 7, 7, **d), torch.randn(3, 2, 3, 3, **d), torch.randn(3, **d)
    assert gradcheck(lambda *t: ops.conv2d_sigmoid_pool(*t, 1, 2), (x, w, b))
    _, params = lenet_params(torch.float64)
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    images = torch.rand(2, 1, 28, 28, **d)
    assert gradcheck(lambda im, *p: ops.lenet5_train_forward(im, p)[0], (images, *leaves), fast_mode=True)


def test_fused_ops_opcheck():
    _, params = lenet_params(torch.float32)
    detached = [p.detach() for p in params]
    x = torch.rand(5, 1, 28, 28, device="cuda")
    torch.library.opcheck(torch.ops.lenet_ext.lenet5_forward.default, (x, *detached))
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    torch.library.opcheck(torch.ops.lenet_ext.lenet5_train_forward.default, (x, *leaves))
    logits, c1, s2, c3, s4, c5, f6 = ops.lenet5_train_forward(x, detached)
    c1w, _, c3w, _, c5w, _, f6w, _, ow, _ = detached
    torch.library.opcheck(
        torch.ops.lenet_ext.lenet5_train_backward.default,
        (torch.randn_like(logits), x, c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, ow, True),
    )
    xc = torch.randn(3, 2, 9, 9, device="cuda", requires_grad=True)
    wc = torch.randn(4, 2, 3, 3, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.lenet_ext.conv2d_sigmoid_pool.default, (xc, wc, None, 1, 2))


def _kernel_launches(prof):
    return [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


def test_model_takes_the_fused_ops_on_cuda(fused):
    """Inference is one launch of our kernel; a training step is our forward, four backward kernels,
    the loss's and the optimizer's; no cuDNN or cuBLAS kernel."""
    model = lenet_ext.LeNet5("ext").cuda()
    x, y = torch.rand(64, 1, 28, 28, device="cuda"), torch.randint(0, 10, (64,), device="cuda")
    with torch.no_grad():
        model(x)
    torch.cuda.synchronize()
    act = torch.profiler.ProfilerActivity
    with torch.profiler.profile(activities=[act.CPU, act.CUDA]) as prof:
        with torch.no_grad():
            model(x)
        torch.cuda.synchronize()
    kernels = [e.name for e in _kernel_launches(prof)]
    assert len(kernels) == 1 and "lenet5_forward_kernel" in kernels[0], kernels
    with torch.profiler.profile(activities=[act.CPU, act.CUDA]) as prof:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        torch.cuda.synchronize()
    kernels = [e.name for e in _kernel_launches(prof)]
    ours = [k for k in kernels if "lenet5" in k]
    assert len(ours) == 5, kernels  # the forward, then the backward's chain, dense, partials, reduce
    forbidden = [k for k in kernels if any(s in k.lower() for s in ("cudnn", "cublas", "gemm", "conv2d_sigmoid"))]
    assert not forbidden, forbidden


def test_fused_gradients_are_bitwise_deterministic(fused):
    first = _train_grads("cuda")
    for _ in range(3):
        for a, b in zip(first, _train_grads("cuda")):
            assert torch.equal(a, b)


def test_fused_device_mismatch_is_a_clear_error():
    _, params = lenet_params(torch.float32, device="cpu")
    with pytest.raises(ValueError, match="same device"):
        ops.lenet5_forward(torch.rand(2, 1, 28, 28, device="cuda"), [p.detach() for p in params])
    with pytest.raises(ValueError, match="same device"):
        ops.lenet5_train_forward(torch.rand(2, 1, 28, 28, device="cuda"), [p.detach() for p in params])


def _adam(model):
    return torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3, device="cuda"), capturable=True, fused=True)


def test_whole_training_step_in_a_cuda_graph_matches_eager(generation):
    """A training step (forward, loss, backward, Adam) captured with torch.cuda.graph and replayed
    gives bitwise the weights of the same steps run eagerly: the fused ops (v2) and the layer ops (v1)."""
    torch.manual_seed(0)
    batches = [(torch.rand(64, 1, 28, 28, device="cuda"), torch.randint(0, 10, (64,), device="cuda")) for _ in range(6)]
    eager = lenet_ext.LeNet5("ext").cuda()
    graphed = lenet_ext.LeNet5("ext").cuda()
    graphed.load_state_dict(eager.state_dict())
    opt_e, opt_g = _adam(eager), _adam(graphed)

    def step(model, opt, x, y):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    # Warm up both the same way (two eager steps on a side stream), then capture one of them.
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for x, y in batches[:2]:
            step(eager, opt_e, x, y)
            step(graphed, opt_g, x, y)
    torch.cuda.current_stream().wait_stream(stream)
    static_x, static_y = batches[2][0].clone(), batches[2][1].clone()
    graph = torch.cuda.CUDAGraph()
    opt_g.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        F.cross_entropy(graphed(static_x), static_y).backward()
        opt_g.step()
    for x, y in batches[2:]:
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        step(eager, opt_e, x, y)
    torch.cuda.synchronize()
    for (name, a), b in zip(graphed.state_dict().items(), eager.state_dict().values()):
        assert torch.equal(a, b), name


def test_training_loop_cuda_graph_matches_eager(tmp_path, offline_env, fused):
    """python -m lenet_ext.train's loop with --cuda-graph on and off: the same weights after two epochs."""
    from lenet_ext import checkpoint, train
    from lenet_ext.training import runs

    for mode in ("on", "off"):
        assert (
            train.main(
                [
                    "--device",
                    "cuda",
                    "--cuda-graph",
                    mode,
                    "--epochs",
                    "2",
                    "--no-plots",
                    "--seed",
                    "3",
                    "--out",
                    str(tmp_path / mode),
                ]
            )
            == 0
        )
    on = checkpoint.load(str(tmp_path / "on" / "last.pt"))
    off = checkpoint.load(str(tmp_path / "off" / "last.pt"))
    assert runs.read_summary(str(tmp_path / "on"))["cuda_graph"] is True
    for k in on["model"]:
        assert torch.equal(on["model"][k], off["model"][k]), k
    assert [r["train_loss"] for r in on["history"]] == [r["train_loss"] for r in off["history"]]


def test_only_our_kernels_run_with_the_second_generation(fused, monkeypatch):
    """The layer-by-layer path on the second-generation kernels launches no cuDNN or cuBLAS kernel either."""
    from lenet_ext import models

    monkeypatch.setattr(models, "fused_on", lambda x: x.is_cpu)  # the layer ops, on v2
    names = _kernels_of_a_step()
    assert any("conv2d_sigmoid_forward_kernel2" in n for n in names), names
    assert any("tiled_product_kernel" in n for n in names), names
