"""Classify digit images with a trained LeNet-5.

    python -m lenet_ext.predict --checkpoint runs/RUN/best.pt digit.png other.jpg
    python -m lenet_ext.predict --checkpoint runs/RUN/best.pt --idx t10k-images-idx3-ubyte.gz --index 7

Images of any size, white-on-black or black-on-white, are prepared as MNIST's digits were:
grayscale, the background made black, the digit scaled to fit a 20x20 box and centred by its
centre of mass in a 28x28 image. Prints the predicted class and the top-3 probabilities.
"""
import argparse
import sys
from typing import List, Tuple

import numpy as np
import torch

from . import checkpoint, data
from .models import LeNet5


class ImageError(ValueError):
    """An image file that cannot be read or holds no digit."""


def prepare(pixels: np.ndarray) -> np.ndarray:
    """A 2-D grayscale array (any size, 0..255) -> 28x28 uint8, white digit on black, MNIST-style."""
    img = pixels.astype(np.float64)
    if img.ndim != 2 or min(img.shape) < 2:
        raise ImageError(f"expected a 2-D image, got shape {img.shape}")
    def border(a):
        return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if np.median(border(img)) > 127:  # dark digit on a light background: invert
        img = 255.0 - img
    img = np.clip(img - np.median(border(img)), 0, 255)  # background to 0
    if img.max() <= 0:
        raise ImageError("the image is blank: no digit found")
    rows, cols = np.flatnonzero(img.max(1) > 0.1 * img.max()), np.flatnonzero(img.max(0) > 0.1 * img.max())
    img = img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    from PIL import Image
    h, w = img.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray((img / img.max() * 255).astype(np.uint8)).resize(size, Image.LANCZOS),
                       dtype=np.float64)
    out = np.zeros((28, 28))
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    total = out.sum()
    if total > 0:  # shift the centre of mass to the middle, as MNIST did
        cy = (out.sum(1) * np.arange(28)).sum() / total
        cx = (out.sum(0) * np.arange(28)).sum() / total
        dy, dx = int(round(13.5 - cy)), int(round(13.5 - cx))
        dy = int(np.clip(dy, -top, 28 - top - small.shape[0]))
        dx = int(np.clip(dx, -left, 28 - left - small.shape[1]))
        out = np.roll(out, (dy, dx), axis=(0, 1))
    return np.clip(out, 0, 255).astype(np.uint8)


def read_image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")  # transparent background counts as white
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, rgba)
            return np.asarray(im.convert("L"))
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageError(f"{path}: cannot read as an image ({exc})") from exc


def load_model(path: str, device="cpu") -> Tuple[LeNet5, List[str]]:
    state = checkpoint.load(path)
    if "model" not in state or "impl" not in state:
        raise checkpoint.CheckpointError(f"{path}: holds no model weights")
    model = LeNet5(impl=state["impl"]).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    classes = data.DATASETS[state.get("config", {}).get("dataset", "mnist")]["classes"]
    return model, classes


@torch.inference_mode()
def classify(model: LeNet5, digits: np.ndarray, device="cpu") -> torch.Tensor:
    """(N, 28, 28) uint8 MNIST-style digits -> (N, 10) probabilities."""
    x = data.to_tensor(digits).to(device)
    return torch.softmax(model(x), 1).cpu()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lenet_ext.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", help="PNG/JPEG (or any PIL-readable) image files")
    parser.add_argument("--checkpoint", required=True, help="a best.pt or last.pt from python -m lenet_ext.train")
    parser.add_argument("--idx", help="an IDX images file (raw or .gz), with --index")
    parser.add_argument("--index", type=int, action="append", help="digit number(s) in --idx (repeatable)")
    parser.add_argument("--device", default="cpu", help="(default: cpu)")
    args = parser.parse_args(argv)
    if not args.images and not args.idx:
        parser.error("give image files, or --idx FILE --index N")
    if args.idx and not args.index:
        parser.error("--idx needs --index N")
    if args.index and not args.idx:
        parser.error("--index needs --idx FILE")
    try:
        model, classes = load_model(args.checkpoint, args.device)
        names, digits, status = [], [], 0
        for path in args.images:
            try:
                digits.append(prepare(read_image(path)))
                names.append(path)
            except ImageError as exc:
                print(f"error: {path}: {exc}" if not str(exc).startswith(path) else f"error: {exc}", file=sys.stderr)
                status = 1
        if args.idx:
            images = data.read_idx(args.idx, "images")
            for i in args.index:
                if not 0 <= i < len(images):
                    print(f"error: --index {i} out of range: {args.idx} holds {len(images)} images", file=sys.stderr)
                    status = 1
                    continue
                digits.append(images[i])
                names.append(f"{args.idx}[{i}]")
        if digits:
            probs = classify(model, np.stack(digits), args.device)
            for name, p in zip(names, probs):
                top = torch.topk(p, 3)
                ranked = ", ".join(f"{classes[int(c)]} {v:.3f}" for v, c in zip(top.values, top.indices))
                print(f"{name}: {classes[int(top.indices[0])]}   (top 3: {ranked})")
        return status
    except (checkpoint.CheckpointError, data.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
