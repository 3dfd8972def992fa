"""The model a server answers with: the checkpoint's network, its description for /api/info, and
the answers for a batch of prepared digits."""

import math
import os
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .. import checkpoint, data, images, predict
from ..errors import UserError


class Model:
    """The checkpoint's model and what answering a request needs."""

    def __init__(self, path: str, device, state: Optional[Dict[str, Any]] = None):
        state = checkpoint.load(path) if state is None else state  # one read: the info is the model's
        self.model, self.classes = predict.load_model(path, device, state)
        self.device = device
        metrics = state.get("metrics")
        metrics = metrics if isinstance(metrics, dict) else {}
        self.info = {
            "checkpoint": os.path.abspath(path),
            "impl": state.get("impl"),
            "epoch": state.get("epoch"),
            "test_acc": metrics.get("test_acc"),
            "classes": self.classes,
            "description": describe(state),
        }

    @staticmethod
    def prepare(blob: bytes) -> np.ndarray:
        """An image file's bytes -> the 28x28 uint8 digit the model reads (ImageError if unusable)."""
        return images.prepare(images.decode(blob, "the image"))

    @torch.inference_mode()
    def answer_batch(self, digits: List[np.ndarray], details: List[bool]) -> List[Dict[str, Any]]:
        """The answers for prepared digits, in one fused inference call (the requests asking for
        details also get their c1 maps, from the layer-by-layer activations)."""
        x = data.to_tensor(np.stack(digits)).to(self.device)
        probs = torch.softmax(self.model(x).double(), 1).cpu()
        maps = {}
        wanted = [i for i, d in enumerate(details) if d]
        if wanted:
            c1 = self.model.activations(x[wanted])["c1"].float().cpu().numpy()
            maps = {i: np.round(c1[k], 3).tolist() for k, i in enumerate(wanted)}
        answers: List[Any] = []  # an answer, or the error of its request
        for i, p in enumerate(probs.tolist()):
            if not all(map(math.isfinite, p)):
                answers.append(UserError("the model's outputs are not finite"))
                continue
            best = max(range(len(p)), key=p.__getitem__)  # the first of equal maxima, as argmax
            out: Dict[str, Any] = {"digit": best, "label": self.classes[best]}
            out["probabilities"] = [round(v, 6) for v in p]
            if details[i]:
                out["input"] = digits[i].astype(int).tolist()
                out["c1"] = maps[i]
            answers.append(out)
        return answers


def describe(state: Dict[str, Any]) -> str:
    """One line on a checkpoint's model: implementation, epoch, test accuracy."""
    metrics = state.get("metrics")
    acc = metrics.get("test_acc") if isinstance(metrics, dict) else None
    return f"{state.get('impl')} kernels, epoch {state.get('epoch')}" + (
        f", test accuracy {100 * acc:.2f}%" if isinstance(acc, float) else ""
    )
