"""LeNet-5, built either from our kernels (impl="ext") or from torch.nn layers (impl="torch").

Both implementations hold the same nn.Conv2d / nn.Linear modules (same names,
same torch.nn initialisation), so they share one state_dict format and differ
only in which functions run the layers:

    c1  conv 1->6, 5x5, padding 2, sigmoid     (N, 6, 28, 28)
    s2  avg-pool 2                             (N, 6, 14, 14)
    c3  conv 6->16, 5x5, sigmoid               (N, 16, 10, 10)
    s4  avg-pool 2                             (N, 16, 5, 5)
    c5  conv 16->120, 5x5, sigmoid             (N, 120, 1, 1)
    f6  linear 120->84, sigmoid                (N, 84)
    logits  linear 84->10                      (N, 10)

Two variants, for the study's error log (python -m lenet_ext.experiments): bias=False drops the
biases of f6 and the output layer (the convolutions keep theirs), and c5="linear" replaces the
C5 convolution by s4 flattened into a 400->120 linear layer plus sigmoid (the same function: on
a 5x5 input the 5x5 convolution is that linear layer; c5_as_linear converts the weights). The
variants run layer by layer through our ops; the fused whole-network ops serve the default model.

On CUDA the fused ops (conv2d_sigmoid_pool, lenet5_forward, lenet5_train_forward) are taken only
with the v2 kernels (lenet_ext.cuda_kernels("v2")) until a GPU run has validated them; else
layer by layer.
"""

from collections import OrderedDict
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _C, ops  # type: ignore[attr-defined]
from .choices import C5_KINDS, IMPLS

LAYERS = ("c1", "s2", "c3", "s4", "c5", "f6", "logits")


def fused_on(x: Tensor) -> bool:
    """Whether LeNet5(impl="ext") takes the fused ops for x's device. (Asked of the tensor: x.is_cpu
    costs a fifth of building x.device, which counts at batch 1: docs/performance.md.)"""
    return x.is_cpu or (x.is_cuda and _C.cuda_kernels() == "v2")


def _ext_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    return ops.conv2d_sigmoid(x, conv.weight, conv.bias, conv.stride[0], conv.padding[0])  # type: ignore[arg-type]


def _ext_conv_pool(conv: nn.Conv2d, x: Tensor):
    """(activation, pooled): conv + sigmoid and the 2x2 average pool after it, in one op (on CUDA
    only with the v2 kernels; else the two ops)."""
    if not fused_on(x):
        activation = _ext_conv(conv, x)
        return activation, ops.avg_pool2d(activation, 2)
    pooled, activation = ops.conv2d_sigmoid_pool(x, conv.weight, conv.bias, conv.padding[0], 2)  # type: ignore[arg-type]
    return activation, pooled


def _ext_linear(layer: nn.Linear, x: Tensor, sigmoid: bool) -> Tensor:
    return ops.linear(x, layer.weight, layer.bias, sigmoid)


def _torch_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    return torch.sigmoid(conv(x))


def _torch_conv_pool(conv: nn.Conv2d, x: Tensor):
    activation = torch.sigmoid(conv(x))
    return activation, F.avg_pool2d(activation, 2)


def _torch_linear(layer: nn.Linear, x: Tensor, sigmoid: bool) -> Tensor:
    y = layer(x)
    return torch.sigmoid(y) if sigmoid else y


# impl -> (conv + sigmoid, conv + sigmoid then 2x2 average pool, linear [+ sigmoid])
_FUNCTIONS = {
    "ext": (_ext_conv, _ext_conv_pool, _ext_linear),
    "torch": (_torch_conv, _torch_conv_pool, _torch_linear),
}


def check_images(images) -> None:
    """Raises TypeError/ValueError unless `images` is a floating (N, 1, 28, 28) tensor."""
    if not isinstance(images, Tensor):
        raise TypeError(f"LeNet5: images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"LeNet5: images must be a floating-point tensor, got {images.dtype}")
    if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"LeNet5: images must have shape (N, 1, 28, 28), got {tuple(images.shape)}")


class LeNet5(nn.Module):
    """LeNet-5 with sigmoid activations and average pooling (61,706 parameters).

    impl="ext" runs our custom ops, impl="torch" the torch.nn reference; a state_dict
    of one loads into the other.
    """

    def __init__(self, impl: str = "ext", num_classes: int = 10, bias: bool = True, c5: str = "conv"):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"LeNet5: impl must be one of {IMPLS}, got {impl!r}")
        if not isinstance(bias, bool):
            raise TypeError(f"LeNet5: bias must be a bool, got {type(bias).__name__}")
        if c5 not in C5_KINDS:
            raise ValueError(f"LeNet5: c5 must be one of {C5_KINDS}, got {c5!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"LeNet5: num_classes must be a positive int, got {num_classes!r}")
        self.impl, self.bias, self.c5_kind = impl, bias, c5
        self.c1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5) if c5 == "conv" else nn.Linear(400, 120)
        self.f6 = nn.Linear(120, 84, bias=bias)
        self.output = nn.Linear(84, num_classes, bias=bias)
        # The fused whole-network ops take the default network only.
        self._fusable = bias and c5 == "conv"

    def extra_repr(self) -> str:
        variant = ("" if self.bias else ", bias=False") + ("" if self.c5_kind == "conv" else ", c5='linear'")
        return f"impl={self.impl!r}{variant}"

    def _layers(self, images: Tensor, until: str = "logits"):
        """Yields (name, output) for each layer in order, stopping after `until`."""
        check_images(images)
        conv, conv_pool, linear = _FUNCTIONS[self.impl]
        activation, x = conv_pool(self.c1, images)
        yield "c1", activation
        yield "s2", x
        activation, x = conv_pool(self.c3, x)
        yield "c3", activation
        yield "s4", x
        c5: Any = self.c5  # nn.Conv2d, or nn.Linear for c5="linear"
        x = conv(c5, x) if self.c5_kind == "conv" else linear(c5, x.flatten(1), True)
        yield "c5", x
        if until == "c5":
            return
        x = linear(self.f6, x.flatten(1), True)
        yield "f6", x
        if until == "f6":
            return
        yield "logits", linear(self.output, x, False)

    def _last(self, images: Tensor, until: str) -> Tensor:
        for _, out in self._layers(images, until):  # noqa: B007  (the last layer's output)
            pass
        return out

    def forward(self, images: Tensor) -> Tensor:
        """(N, 1, 28, 28) images -> (N, num_classes) logits.

        impl="ext" runs the whole network as one op: ops.lenet5_forward without autograd
        (no_grad / inference_mode, or nothing requiring grad), else ops.lenet5_train_forward (one
        autograd node), on the CPU (and on CUDA with the v2 kernels); elsewhere, for the
        variants and for impl="torch", layer by layer."""
        if self.impl == "ext" and self._fusable and isinstance(images, Tensor) and fused_on(images):
            # (Parameters on another device make the ops raise, as the layer-by-layer path would.)
            params = self._fused_params()
            try:
                if not torch.is_grad_enabled() or not (images.requires_grad or any(p.requires_grad for p in params)):
                    return ops.lenet5_forward(images, params)
                return ops.lenet5_train_forward(images, params)[0]
            except (TypeError, ValueError) as exc:  # the ops check the images themselves; checking
                error = exc  # them here only on failure keeps a batch-1 call shorter (performance.md)
            check_images(images)  # the model's message where the images are at fault
            raise error
        return self._last(images, "logits")

    def _fused_params(self):
        """The parameters in ops.LENET5_PARAMS order, read from the module dicts directly and spelled
        out (at batch 1, fifteen nn.Module.__getattr__ calls, or a loop over the names, cost a
        measurable share of the call: docs/performance.md; test_model checks the order)."""
        mods = self._modules
        c1, c3, c5 = mods["c1"]._parameters, mods["c3"]._parameters, mods["c5"]._parameters
        f6, out = mods["f6"]._parameters, mods["output"]._parameters
        return (
            c1["weight"], c1["bias"], c3["weight"], c3["bias"], c5["weight"],
            c5["bias"], f6["weight"], f6["bias"], out["weight"], out["bias"],
        )  # fmt: skip

    def features(self, images: Tensor) -> Tensor:
        """The 84-unit F6 layer's output (after its sigmoid), (N, 84)."""
        return self._last(images, "f6")

    def activations(self, images: Tensor) -> Dict[str, Tensor]:
        """Every layer's output, in order: c1, s2, c3, s4, c5, f6, logits."""
        return OrderedDict(self._layers(images))


def model_options(config: Dict[str, Any]) -> Dict[str, Any]:
    """LeNet5's variant options (bias, c5) from a run's config; runs made before the variants
    existed have neither and are the default network."""
    bias, c5 = config.get("bias", True), config.get("c5", "conv")
    if not isinstance(bias, bool):
        raise ValueError(f"its config's bias must be true or false, got {bias!r}")
    if c5 not in C5_KINDS:
        raise ValueError(f"its config's c5 must be one of {C5_KINDS}, got {c5!r}")
    return {"bias": bias, "c5": c5}


def c5_as_linear(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """A default (c5="conv") state_dict converted for LeNet5(c5="linear"): C5's (120, 16, 5, 5)
    kernel flattened to the (120, 400) weight of the linear layer over flattened s4 (channel, row,
    column order, as Tensor.flatten orders s4). The two networks then compute the same function."""
    out = dict(state)
    out["c5.weight"] = state["c5.weight"].reshape(state["c5.weight"].shape[0], -1).clone()
    return out
