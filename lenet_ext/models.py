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
"""
from collections import OrderedDict
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops

IMPLS = ("ext", "torch")
LAYERS = ("c1", "s2", "c3", "s4", "c5", "f6", "logits")


def _ext_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    return ops.conv2d_sigmoid(x, conv.weight, conv.bias, conv.stride[0], conv.padding[0])


def _ext_conv_pool(conv: nn.Conv2d, x: Tensor):
    """(activation, pooled): conv + sigmoid and the 2x2 average pool after it; one op on the CPU
    (the fused op has no CUDA kernel yet: there, the two ops)."""
    if x.device.type != "cpu":
        activation = _ext_conv(conv, x)
        return activation, ops.avg_pool2d(activation, 2)
    pooled, activation = ops.conv2d_sigmoid_pool(x, conv.weight, conv.bias, conv.padding[0], 2)
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


# (module, parameter) names of ops.lenet5_forward's parameters, in its order.
_FUSED_PARAMS = tuple(tuple(name.split(".")) for name in ops.LENET5_PARAMS)

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

    def __init__(self, impl: str = "ext", num_classes: int = 10):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"LeNet5: impl must be one of {IMPLS}, got {impl!r}")
        self.impl = impl
        self.c1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}"

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
        x = conv(self.c5, x)
        yield "c5", x
        if until == "c5":
            return
        x = linear(self.f6, x.flatten(1), True)
        yield "f6", x
        if until == "f6":
            return
        yield "logits", linear(self.output, x, False)

    def _last(self, images: Tensor, until: str) -> Tensor:
        for _, out in self._layers(images, until):
            pass
        return out

    def forward(self, images: Tensor) -> Tensor:
        """(N, 1, 28, 28) images -> (N, num_classes) logits.

        impl="ext" on the CPU runs the whole network as one op: ops.lenet5_forward without autograd
        (no_grad / inference_mode, or nothing requiring grad), else ops.lenet5_train_forward (one
        autograd node); on other devices, and for impl="torch", layer by layer."""
        if self.impl == "ext" and isinstance(images, Tensor) and images.device.type == "cpu":
            # (Parameters on another device make the ops raise, as the layer-by-layer path would.)
            check_images(images)
            params = self._fused_params()
            if not torch.is_grad_enabled() or not (images.requires_grad or any(p.requires_grad for p in params)):
                return ops.lenet5_forward(images, params)
            return ops.lenet5_train_forward(images, params)[0]
        return self._last(images, "logits")

    def _fused_params(self):
        """The parameters in ops.LENET5_PARAMS order (read from the module dicts directly: at batch 1,
        fifteen nn.Module.__getattr__ calls cost as much as a third of the arithmetic)."""
        mods = self._modules
        return tuple(mods[layer]._parameters[kind] for layer, kind in _FUSED_PARAMS)

    def features(self, images: Tensor) -> Tensor:
        """The 84-unit F6 layer's output (after its sigmoid), (N, 84)."""
        return self._last(images, "f6")

    def activations(self, images: Tensor) -> Dict[str, Tensor]:
        """Every layer's output, in order: c1, s2, c3, s4, c5, f6, logits."""
        return OrderedDict(self._layers(images))
