"""LeNet5(impl="ext") against LeNet5(impl="torch") with the same weights."""

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lenet_ext
from lenet_ext.models import LAYERS

ATOL, RTOL = 1e-5, 1e-4  # float32, as in test_ops.py (scaled by the largest value)


def close(actual, expected, atol=ATOL, rtol=RTOL):
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, atol=atol * scale, rtol=rtol)


def pair(device="cpu", dtype=torch.float32):
    ext = lenet_ext.LeNet5(impl="ext").to(device, dtype)
    ref = lenet_ext.LeNet5(impl="torch").to(device, dtype)
    ref.load_state_dict(ext.state_dict())
    return ext, ref


def images(n, device="cpu", dtype=torch.float32):
    return torch.rand(n, 1, 28, 28, device=device, dtype=dtype)


def test_architecture():
    model = lenet_ext.LeNet5()
    assert sum(p.numel() for p in model.parameters()) == 61706
    assert list(model.state_dict()) == [
        f"{layer}.{p}" for layer in ("c1", "c3", "c5", "f6", "output") for p in ("weight", "bias")
    ]
    acts = model.activations(images(3))
    assert list(acts) == list(LAYERS)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "c1": (3, 6, 28, 28),
        "s2": (3, 6, 14, 14),
        "c3": (3, 16, 10, 10),
        "s4": (3, 16, 5, 5),
        "c5": (3, 120, 1, 1),
        "f6": (3, 84),
        "logits": (3, 10),
    }


def test_fused_params_are_the_ops_parameters_in_order():
    model = lenet_ext.LeNet5()
    named = dict(model.named_parameters())
    params = model._fused_params()
    assert len(params) == len(lenet_ext.ops.LENET5_PARAMS)
    for name, p in zip(lenet_ext.ops.LENET5_PARAMS, params):
        assert p is named[name], name
    # A parameter replaced on its module is the one the fused forward then reads.
    model.c3.weight = nn.Parameter(torch.randn_like(model.c3.weight))
    assert model._fused_params()[2] is model.c3.weight


def test_initialised_as_torch_nn():
    torch.manual_seed(123)
    model = lenet_ext.LeNet5()
    torch.manual_seed(123)
    layers = [
        nn.Conv2d(1, 6, 5, padding=2),
        nn.Conv2d(6, 16, 5),
        nn.Conv2d(16, 120, 5),
        nn.Linear(120, 84),
        nn.Linear(84, 10),
    ]
    expected = [p for layer in layers for p in layer.parameters()]
    for ours, theirs in zip(model.parameters(), expected, strict=True):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_same_logits_features_activations(batch, device):
    ext, ref = pair(device)
    x = images(batch, device)
    close(ext(x), ref(x))
    close(ext.features(x), ref.features(x))
    torch.testing.assert_close(ext.features(x), ext.activations(x)["f6"])
    for (_, a), (_, b) in zip(ext.activations(x).items(), ref.activations(x).items(), strict=True):
        close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_gradients(dtype, device):
    ext, ref = pair(device, dtype)
    x, y = images(32, device, dtype), torch.randint(0, 10, (32,), device=device)
    F.cross_entropy(ext(x), y).backward()
    F.cross_entropy(ref(x), y).backward()
    for (name, p), q in zip(ext.named_parameters(), ref.parameters(), strict=True):
        if dtype == torch.float64:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-12, rtol=1e-10, msg=name)
        else:
            close(p.grad, q.grad)


def test_input_gradient_and_gradcheck():
    ext, ref = pair(dtype=torch.float64)
    x = images(2, dtype=torch.float64).requires_grad_()
    (gx_ext,) = torch.autograd.grad(ext(x).square().sum(), x)
    (gx_ref,) = torch.autograd.grad(ref(x).square().sum(), x)
    torch.testing.assert_close(gx_ext, gx_ref, atol=1e-12, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda t: ext(t), (x,))


def test_twenty_sgd_steps_track_torch(device):
    """Train both from the same start on the same batches: the losses stay together."""
    ext, ref = pair(device)
    opts = [torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9) for m in (ext, ref)]
    gen = torch.Generator(device="cpu").manual_seed(torch.initial_seed() % 2**31)
    first = last = None
    for step in range(20):
        x = torch.rand(64, 1, 28, 28, generator=gen).to(device)
        y = torch.randint(0, 10, (64,), generator=gen).to(device)
        losses = []
        for model, opt in zip((ext, ref), opts):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert abs(losses[0] - losses[1]) <= 1e-4 * max(1.0, abs(losses[1])), (step, losses)
        first = losses if first is None else first
        last = losses
    for p, q in zip(ext.parameters(), ref.parameters()):
        close(p, q, atol=1e-4, rtol=1e-3)
    assert last != first  # the models did train


def test_state_dict_interchange():
    ext, ref = pair()
    other = lenet_ext.LeNet5(impl="ext")
    other.load_state_dict(ref.state_dict())
    x = images(5)
    torch.testing.assert_close(other(x), ext(x))


def test_zero_size_batch(device):
    ext, _ = pair(device)
    assert ext(images(0, device)).shape == (0, 10)


def test_compile_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    ext, _ = pair()
    compiled = torch.compile(ext, fullgraph=True)
    x, y = images(16), torch.randint(0, 10, (16,))
    out = compiled(x)
    close(out, ext(x))
    F.cross_entropy(out, y).backward()
    grads = [p.grad.clone() for p in ext.parameters()]
    ext.zero_grad()
    F.cross_entropy(ext(x), y).backward()
    for g, p in zip(grads, ext.parameters()):
        close(g, p.grad)


def test_compile_traces_our_ops():
    """The compiled graph calls lenet_ext ops, not torch's conv/pool/linear (on the CPU with
    gradients wanted: the training op for the whole network)."""
    torch._dynamo.reset()
    ext, _ = pair()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch.compile(ext, backend=backend, fullgraph=True)(images(4))
    assert len(graphs) == 1
    targets = {str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"}
    assert any("lenet_ext.lenet5_train_forward" in t for t in targets), targets
    assert not any("conv2d" in t and "lenet_ext" not in t for t in targets), targets


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "frozen"])
def test_inference_runs_the_fused_forward(mode, monkeypatch):
    """On the CPU with no gradient wanted, LeNet5(impl="ext") runs ops.lenet5_forward (one op for the
    whole network) and gives the layer-by-layer logits; with gradients it runs the training op."""
    ext, ref = pair()
    x = images(9)
    calls = []
    fused = lenet_ext.ops.lenet5_forward
    monkeypatch.setattr(lenet_ext.ops, "lenet5_forward", lambda *a: calls.append(1) or fused(*a))
    layered = ext(x)  # parameters require grad: the training op
    assert calls == [] and layered.requires_grad
    if mode == "no_grad":
        with torch.no_grad():
            out = ext(x)
    elif mode == "inference_mode":
        with torch.inference_mode():
            out = ext(x)
    else:
        ext.requires_grad_(False)
        out = ext(x)
    assert calls == [1]
    close(out, layered.detach())
    with torch.no_grad():
        close(out, ref(x))


def test_compile_inference_uses_the_fused_forward():
    torch._dynamo.reset()
    ext, _ = pair()
    x = images(4)
    with torch.no_grad():
        out = torch.compile(ext, fullgraph=True)(x)
        close(out, ext(x))


# ------------------------------------------------------------------------------------------ study variants

VARIANTS = [dict(bias=False), dict(c5="linear"), dict(bias=False, c5="linear")]


def variant_pair(options, device="cpu", dtype=torch.float32):
    ext = lenet_ext.LeNet5(impl="ext", **options).to(device, dtype)
    ref = lenet_ext.LeNet5(impl="torch", **options).to(device, dtype)
    ref.load_state_dict(ext.state_dict())
    return ext, ref


@pytest.mark.parametrize("options", VARIANTS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_variants_match_their_torch_twins(options, dtype, device):
    """The study's variants (layer by layer through our ops: linear with bias=None, linear 400->120)
    against the same networks from torch layers: logits, every activation and every gradient,
    the input's included."""
    ext, ref = variant_pair(options, device, dtype)
    x = images(17, device, dtype).requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    y = torch.randint(0, 10, (17,), device=device)
    for (_, a), (_, b) in zip(ext.activations(x).items(), ref.activations(xr).items(), strict=True):
        close(a, b) if dtype == torch.float32 else torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    F.cross_entropy(ext(x), y).backward()
    F.cross_entropy(ref(xr), y).backward()
    grads = [(f"param {n}", p.grad, q.grad) for (n, p), q in zip(ext.named_parameters(), ref.parameters(), strict=True)]
    for name, g, h in grads + [("input", x.grad, xr.grad)]:
        if dtype == torch.float64:
            torch.testing.assert_close(g, h, atol=1e-12, rtol=1e-10, msg=name)
        else:
            close(g, h)
    if "bias" in options:
        assert ext.f6.bias is None and ext.output.bias is None and ext.c1.bias is not None
    if options.get("c5") == "linear":
        assert tuple(ext.c5.weight.shape) == (120, 400)


def test_variants_gradcheck():
    for options in VARIANTS:
        torch.manual_seed(0)
        model = lenet_ext.LeNet5(impl="ext", **options).double()
        x = torch.rand(2, 1, 28, 28, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(model, (x,), fast_mode=True)


def test_flattened_c5_is_the_conv():
    """On a 5x5 input the 5x5 C5 convolution is a 400->120 linear layer over flattened s4: the conv's
    weights in the linear variant give the same logits, and the same seed gives the same weights."""
    from lenet_ext.models import c5_as_linear

    conv = lenet_ext.LeNet5()
    linear = lenet_ext.LeNet5(c5="linear")
    linear.load_state_dict(c5_as_linear(conv.state_dict()))
    x = images(33)
    with torch.no_grad():
        close(linear(x), conv(x), atol=1e-6, rtol=1e-6)
    torch.manual_seed(5)
    a = lenet_ext.LeNet5().state_dict()
    torch.manual_seed(5)
    b = lenet_ext.LeNet5(c5="linear").state_dict()
    assert all(torch.equal(a[k].reshape(-1), b[k].reshape(-1)) for k in a)


def test_variants_skip_the_fused_ops(monkeypatch):
    """The fused whole-network ops serve the default network only."""
    from lenet_ext import ops

    calls = []
    monkeypatch.setattr(ops, "lenet5_forward", lambda *a: calls.append("fused") or None)
    monkeypatch.setattr(ops, "lenet5_train_forward", lambda *a: calls.append("fused") or None)
    for options in VARIANTS:
        with torch.no_grad():
            assert lenet_ext.LeNet5(**options)(images(2)).shape == (2, 10)
    assert calls == []


def test_variant_arguments():
    with pytest.raises(ValueError, match="c5 must be one of"):
        lenet_ext.LeNet5(c5="pool")
    with pytest.raises(TypeError, match="bias must be a bool"):
        lenet_ext.LeNet5(bias=1)


def test_inference_at_batch_one_holds_no_memory_per_call():
    """The fused inference op reuses each thread's scratch: 10,000 calls at batch 1 leave the
    resident memory where the first hundred put it (within 4 MB), with the same answer each time."""

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc")
    model = lenet_ext.LeNet5("ext").eval()
    x = torch.rand(1, 1, 28, 28)
    with torch.inference_mode():
        first = model(x)
        for _ in range(100):
            model(x)
        before = rss_mb()
        for _ in range(10_000):
            out = model(x)
        after = rss_mb()
    assert torch.equal(out, first)
    assert after - before < 4, f"{before:.1f} -> {after:.1f} MB"
