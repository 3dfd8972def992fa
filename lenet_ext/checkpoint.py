"""Checkpoints: the format (a dict of tensors and plain values, saved atomically), loading one
safely (weights_only, refusing anything that is not ours), validating its weights, and building
the model it holds."""

import io
import os
import pickle
from typing import Any, Dict, Optional

import torch

from .errors import UserError
from .fileio import atomic_write_bytes

FORMAT = "lenet_ext.checkpoint.v1"


class CheckpointError(UserError, ValueError):
    """A file that is not a lenet_ext checkpoint, or not a readable one."""


def save(path: str, payload: Dict[str, Any]) -> None:
    """Saves a checkpoint dict (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: str, map_location="cpu") -> Dict[str, Any]:
    """Loads a checkpoint with torch.load(weights_only=True); CheckpointError unless it is ours.
    A file holding arbitrary Python objects is refused (loading it could run code) and no advice
    to load it unsafely is ever passed on."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (best.pt or last.pt)")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # a pickle that names functions or classes to call
            raise CheckpointError(
                f"{path}: refused: it holds Python objects other than tensors and plain values, "
                "which could run code when loaded; lenet_ext checkpoints never do"
            ) from None
        raise CheckpointError(
            f"{path}: not a lenet_ext checkpoint (not a torch checkpoint file, or a corrupt one)"
        ) from None
    except MemoryError as exc:
        raise CheckpointError(f"{path}: not a lenet_ext checkpoint (out of memory reading it)") from exc
    except Exception as exc:  # truncated zip files, random bytes, other torch files
        raise CheckpointError(
            f"{path}: not a lenet_ext checkpoint (unreadable: corrupt, truncated or not a torch "
            f"checkpoint: {type(exc).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a lenet_ext checkpoint (expected a dict with format {FORMAT!r}; "
            "was it written by lenet_ext.train?)"
        )
    return payload


def check_weights(path: str, state: Dict[str, Any], expected: Dict[str, torch.Tensor]) -> None:
    """CheckpointError unless state (a state_dict) holds exactly the expected parameters, with their
    shapes, as finite floating-point tensors."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds no model weights (its 'model' entry is a {type(state).__name__})")
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(map(str, extra))}"] if extra else []
        )
        raise CheckpointError(f"{path}: does not hold this LeNet-5's weights ({'; '.join(parts)})")
    for name, ref in expected.items():
        value = state[name]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise CheckpointError(f"{path}: {name} is not a floating-point tensor")
        if value.shape != ref.shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(value.shape)}, expected {tuple(ref.shape)}")
        if not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values: the weights are unusable")


def model_from_checkpoint(path: str, state: Optional[Dict[str, Any]] = None, device="cpu", impl: Optional[str] = None):
    """(LeNet5 in eval mode with the checkpoint's weights, the checkpoint dict). Every problem with
    the file is a CheckpointError naming it: unreadable, not ours, wrong or missing weights."""
    from .models import IMPLS, LeNet5, model_options

    state = load(path) if state is None else state
    if "model" not in state:
        raise CheckpointError(f"{path}: holds no model weights")
    impl = impl or state.get("impl", "ext")
    if impl not in IMPLS:
        raise CheckpointError(f"{path}: unknown implementation {impl!r} (expected one of {IMPLS})")
    config = state.get("config")
    try:
        options = model_options(config if isinstance(config, dict) else {})
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    weights: Any = state["model"]
    classes = (
        weights["output.weight"].shape[0]
        if isinstance(weights, dict)
        and isinstance(weights.get("output.weight"), torch.Tensor)
        and weights["output.weight"].dim() == 2
        else 10
    )
    model = LeNet5(impl=impl, num_classes=max(int(classes), 1), **options)
    check_weights(path, weights, model.state_dict())
    model.load_state_dict({k: v.to(torch.float32) for k, v in weights.items()})
    return model.to(device).eval(), state
