"""Classify digit images with a trained LeNet-5.

    python -m lenet_ext.predict --checkpoint runs/RUN/best.pt digit.png other.jpg
    python -m lenet_ext.predict --checkpoint runs/RUN/best.pt --idx t10k-images-idx3-ubyte.gz --index 7

Images of any size, white-on-black or black-on-white (or a digit on a transparent background),
are prepared as MNIST's digits were: grayscale, the background made black, the digit scaled to
fit a 20x20 box and centred by its centre of mass in a 28x28 image. Prints the predicted class
and the top-3 probabilities. A file that cannot be used is reported on its own line and the
others are still predicted (exit status 1 if any failed).

Decoding is bounded: images over 25 megapixels are refused (JPEGs are reduced while decoding,
so a large photo is fine), and every image is reduced to at most 1024 pixels a side before the
preparation, so memory stays well under a gigabyte whatever the file claims.
"""

import argparse
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import checkpoint, cli, data
from .errors import UserError
from .images import MIN_CONTRAST, ImageError, prepare, read_image
from .models import LeNet5


def load_model(path: str, device="cpu", state: Optional[Dict[str, Any]] = None) -> Tuple[LeNet5, List[str]]:
    """(the checkpoint's model in eval mode on device, its class names); CheckpointError if unusable.
    state: the checkpoint already loaded from path (else it is read)."""
    model, state = checkpoint.model_from_checkpoint(path, state, device=device)
    config = state.get("config")
    dataset = config.get("dataset", "mnist") if isinstance(config, dict) else "mnist"
    classes = list(data.DATASETS[dataset]["classes"]) if dataset in data.DATASETS else [str(i) for i in range(10)]
    if len(classes) != model.output.out_features:
        classes = [str(i) for i in range(model.output.out_features)]
    return model, classes


@torch.inference_mode()
def classify(model: LeNet5, digits: np.ndarray, device="cpu") -> torch.Tensor:
    """(N, 28, 28) uint8 MNIST-style digits -> (N, classes) probabilities."""
    x = data.to_tensor(digits).to(device)
    probs = torch.softmax(model(x), 1).cpu()
    if not torch.isfinite(probs).all():
        raise UserError("the model's outputs are not finite (NaN or infinite): the checkpoint is unusable")
    return probs


def _report(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _main_impl(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lenet_ext.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="*", help="PNG/JPEG (or any PIL-readable) image files")
    parser.add_argument("--checkpoint", required=True, help="a best.pt or last.pt from python -m lenet_ext.train")
    parser.add_argument("--idx", help="an IDX images file (raw or .gz), with --index")
    parser.add_argument("--index", type=int, action="append", help="digit number(s) in --idx (repeatable)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    args = parser.parse_args(argv)
    if not args.images and not args.idx:
        parser.error("give image files, or --idx FILE --index N")
    if args.idx and not args.index:
        parser.error("--idx needs --index N")
    if args.index and not args.idx:
        parser.error("--index needs --idx FILE")
    state = checkpoint.load(args.checkpoint)
    device = cli.parse_device(args.device, state.get("impl", "ext"))
    model, classes = load_model(args.checkpoint, device, state)
    names, digits, status = [], [], 0
    for path in args.images:
        try:
            digits.append(prepare(read_image(path)))
            names.append(path)
        except ImageError as exc:
            _report(str(exc) if str(exc).startswith(path) else f"{path}: {exc}")
            status = 1
    if args.idx:
        images = data.read_idx(args.idx, "images")
        for i in args.index:
            if not 0 <= i < len(images):
                _report(f"--index {i} out of range: {args.idx} holds {len(images)} images (0..{len(images) - 1})")
                status = 1
            elif int(images[i].max()) - int(images[i].min()) < MIN_CONTRAST:
                _report(f"{args.idx}[{i}]: the digit is blank (all its pixels are {int(images[i].min())})")
                status = 1
            else:
                digits.append(images[i])
                names.append(f"{args.idx}[{i}]")
    if digits:
        probs = classify(model, np.stack(digits), device)
        k = min(3, probs.shape[1])
        for name, p in zip(names, probs):
            top = torch.topk(p, k)
            ranked = ", ".join(f"{classes[int(c)]} {v:.3f}" for v, c in zip(top.values, top.indices))
            print(f"{name}: {classes[int(top.indices[0])]}   (top {k}: {ranked})")
    return status


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
