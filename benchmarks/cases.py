"""The benchmark matrix shared by the pytest-benchmark suite and the report: each case is a
pair of callables (ours, torch's twin) doing the same work on the same data."""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

import lenet_ext
from lenet_ext import ops

# LeNet-5's layers: (name, input shape without batch, op kind, op arguments)
CONV = {"c1": ((1, 28, 28), 6, 5, 2), "c3": ((6, 14, 14), 16, 5, 0), "c5": ((16, 5, 5), 120, 5, 0)}
POOL = {"s2": (6, 28, 28), "s4": (16, 10, 10)}
LINEAR = {"f6": (120, 84, True), "output": (84, 10, False)}

# Multiply-adds x 2 per image.
FLOPS_FORWARD = {
    "c1": 2 * 6 * 784 * 25,
    "c3": 2 * 16 * 100 * 150,
    "c5": 2 * 120 * 400,
    "s2": 6 * 14 * 14 * 4,
    "s4": 16 * 5 * 5 * 4,
    "f6": 2 * 84 * 120,
    "output": 2 * 10 * 84,
}
# forward + backward (weight and bias gradients; input gradients except for c1, whose input is the image)
FLOPS_TRAIN = {k: v * (2 if k == "c1" else 3) for k, v in FLOPS_FORWARD.items()}
FLOPS_LENET_FORWARD = sum(FLOPS_FORWARD.values())
FLOPS_LENET_TRAIN = sum(FLOPS_TRAIN.values())


@dataclass
class Case:
    name: str  # e.g. "conv2d_sigmoid c3 fwd+bwd"
    group: str  # "op" or "model"
    batch: int
    flops: float  # per call
    ext: Callable[[], object]
    torch: Callable[[], object]
    compiled: Optional[Callable[[], object]] = None  # the torch twin under torch.compile (model rows on CUDA)


def _runner(f, inputs, backward):
    """A call of f(*inputs), followed by a backward pass when `backward`."""

    def call():
        y = f(*inputs)
        if backward:
            y.backward(torch.ones_like(y))

    return call


def _conv_case(layer, batch, device, backward):
    (c, h, w), o, k, p = CONV[layer]
    x = torch.rand(batch, c, h, w, device=device, requires_grad=backward and layer != "c1")
    weight = (torch.randn(o, c, k, k, device=device) * 0.2).requires_grad_(backward)
    bias = torch.randn(o, device=device, requires_grad=backward)
    inputs = (x, weight, bias)
    return (
        _runner(lambda x, w, b: ops.conv2d_sigmoid(x, w, b, 1, p), inputs, backward),
        _runner(lambda x, w, b: torch.sigmoid(F.conv2d(x, w, b, 1, p)), inputs, backward),
    )


def _pool_case(layer, batch, device, backward):
    inputs = (torch.rand(batch, *POOL[layer], device=device, requires_grad=backward),)
    return (
        _runner(lambda x: ops.avg_pool2d(x, 2), inputs, backward),
        _runner(lambda x: F.avg_pool2d(x, 2), inputs, backward),
    )


def _linear_case(layer, batch, device, backward):
    i, o, sig = LINEAR[layer]
    x = torch.rand(batch, i, device=device, requires_grad=backward)
    weight = (torch.randn(o, i, device=device) * 0.1).requires_grad_(backward)
    bias = torch.randn(o, device=device, requires_grad=backward)

    def ref(x, w, b):
        y = F.linear(x, w, b)
        return torch.sigmoid(y) if sig else y

    inputs = (x, weight, bias)
    return (_runner(lambda x, w, b: ops.linear(x, w, b, sig), inputs, backward), _runner(ref, inputs, backward))


def _model_cases(batch, device, compiled=False) -> List[Case]:
    """The network as LeNet5 runs it: inference, and a training step (forward, cross-entropy,
    backward, Adam in torch's fused form on both sides). compiled: also the torch twin under
    torch.compile(mode="reduce-overhead") (CUDA graphs), for the GPU report."""
    torch.manual_seed(0)
    models = {impl: lenet_ext.LeNet5(impl).to(device) for impl in ("ext", "torch")}
    models["torch"].load_state_dict(models["ext"].state_dict())
    if compiled:
        models["compiled"] = lenet_ext.LeNet5("torch").to(device)
        models["compiled"].load_state_dict(models["ext"].state_dict())
    images = torch.rand(batch, 1, 28, 28, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    fused = {"fused": True} if device in ("cpu", "cuda") else {}
    opts = {impl: torch.optim.Adam(m.parameters(), lr=1e-3, **fused) for impl, m in models.items()}
    forward = {impl: m for impl, m in models.items()}
    if compiled:
        forward["compiled"] = torch.compile(models["compiled"], mode="reduce-overhead")

    def infer(impl):
        def call():
            with torch.inference_mode():
                return forward[impl](images)

        return call

    def train(impl):
        def call():
            opts[impl].zero_grad(set_to_none=True)
            F.cross_entropy(forward[impl](images), labels).backward()
            opts[impl].step()

        return call

    return [
        Case(
            "LeNet-5 inference",
            "model",
            batch,
            FLOPS_LENET_FORWARD * batch,
            infer("ext"),
            infer("torch"),
            infer("compiled") if compiled else None,
        ),
        Case(
            "LeNet-5 training step",
            "model",
            batch,
            FLOPS_LENET_TRAIN * batch,
            train("ext"),
            train("torch"),
            train("compiled") if compiled else None,
        ),
    ]


def op_cases(batch, device) -> List[Case]:
    cases = []
    for backward in (False, True):
        mode = "fwd+bwd" if backward else "fwd"
        flops = FLOPS_TRAIN if backward else FLOPS_FORWARD
        for layer in CONV:
            cases.append(
                Case(
                    f"conv2d_sigmoid {layer} {mode}",
                    "op",
                    batch,
                    flops[layer] * batch,
                    *_conv_case(layer, batch, device, backward),
                )
            )
        for layer in POOL:
            cases.append(
                Case(
                    f"avg_pool2d {layer} {mode}",
                    "op",
                    batch,
                    flops[layer] * batch,
                    *_pool_case(layer, batch, device, backward),
                )
            )
        for layer in LINEAR:
            cases.append(
                Case(
                    f"linear {layer} {mode}",
                    "op",
                    batch,
                    flops[layer] * batch,
                    *_linear_case(layer, batch, device, backward),
                )
            )
    return cases


def all_cases(batch, device, compiled=False) -> List[Case]:
    return op_cases(batch, device) + _model_cases(batch, device, compiled)


def cases_by_name(batch, device) -> Dict[str, Case]:
    return {c.name: c for c in all_cases(batch, device)}
