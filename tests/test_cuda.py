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
    reason="needs a CUDA GPU and lenet_ext built with CUDA")

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
def test_cuda_matches_our_cpu_kernels(batch):
    for name, (x, w, b, s, p) in lenet_layers(batch, "cpu").items():
        xc, wc, bc = (t.detach().cuda().requires_grad_() for t in (x, w, b))
        y, yc = ops.conv2d_sigmoid(x, w, b, s, p), ops.conv2d_sigmoid(xc, wc, bc, s, p)
        close(yc.cpu(), y)
        g = torch.randn_like(y)
        for a, c in zip(torch.autograd.grad(y, (x, w, b), g), torch.autograd.grad(yc, (xc, wc, bc), g.cuda())):
            close(c.cpu(), a)
        if y.shape[-1] >= 2:  # c5's output is 1x1: nothing to pool
            close(ops.avg_pool2d(yc, 2).cpu(), ops.avg_pool2d(y, 2))
    h, w, b = torch.randn(batch, 120), torch.randn(84, 120), torch.randn(84)
    close(ops.linear(h.cuda(), w.cuda(), b.cuda(), True).cpu(), ops.linear(h, w, b, True))


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


def test_gradients_are_bitwise_deterministic():
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


@pytest.mark.parametrize("call", [
    lambda: ops.conv2d_sigmoid(torch.randn(2, 1, 8, 8, device="cuda"), torch.randn(3, 1, 3, 3)),
    lambda: ops.conv2d_sigmoid(torch.randn(2, 1, 8, 8, device="cuda"), torch.randn(3, 1, 3, 3, device="cuda"),
                               torch.randn(3)),
    lambda: ops.linear(torch.randn(2, 5, device="cuda"), torch.randn(3, 5)),
    lambda: ops.linear(torch.randn(2, 5), torch.randn(3, 5, device="cuda")),
], ids=["conv weight on cpu", "conv bias on cpu", "linear weight on cpu", "linear input on cpu"])
def test_device_mismatch_is_a_clear_error(call):
    with pytest.raises(ValueError, match="same device"):
        call()


def test_model_on_wrong_device_is_a_clear_error():
    model = lenet_ext.LeNet5("ext")  # on the CPU
    with pytest.raises(ValueError, match="same device"):
        model(torch.rand(2, 1, 28, 28, device="cuda"))


def test_only_our_kernels_run():
    """Forward and backward of LeNet5(impl="ext") on CUDA launch no cuDNN or cuBLAS kernel."""
    model = lenet_ext.LeNet5("ext").cuda()
    x = torch.rand(64, 1, 28, 28, device="cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        model.zero_grad()
        model(x).sum().backward()
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages()]
    assert any("conv2d_sigmoid_forward_kernel" in n for n in names), names
    forbidden = [n for n in names if any(s in n.lower() for s in ("cudnn", "cublas", "gemm", "aten::conv",
                                                                  "aten::mm", "aten::addmm", "aten::avg_pool"))]
    assert not forbidden, forbidden
