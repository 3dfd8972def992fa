"""images.prepare against its plain statement: the fast version must give the same 28x28 bytes,
bit for bit, on real digits (both polarities, scaled, off-centre), drawn strokes, float, bool and
16-bit arrays, noise and edge cases."""

import io

import numpy as np
import pytest

from lenet_ext import data, images
from lenet_ext.images import MIN_CONTRAST, ImageError, _to_byte_range


def reference_prepare(pixels: np.ndarray) -> np.ndarray:
    """A 2-D grayscale array (any size; 0..255, or floats in 0..1) -> 28x28 uint8, white digit on
    black, MNIST-style. ImageError if it is not a usable 2-D image or holds no digit."""
    img = np.asarray(pixels)
    if img.ndim != 2:
        raise ImageError(f"expected a 2-D grayscale image, got an array of shape {img.shape}")
    if min(img.shape) < 2:
        raise ImageError(
            f"the image is {img.shape[1]} x {img.shape[0]} pixels: too small to hold a digit (at least 2 x 2)"
        )
    if img.dtype == bool:
        img = img.astype(np.float64) * 255.0
    img = img.astype(np.float64)
    if not np.isfinite(img).all():
        raise ImageError("the image holds NaN or infinite pixel values")
    img = _to_byte_range(img, np.issubdtype(np.asarray(pixels).dtype, np.floating))

    def border(a):
        return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])

    if np.median(border(img)) > 127:  # dark digit on a light background: invert
        img = 255.0 - img
    img = np.clip(img - np.median(border(img)), 0, 255)  # background to 0
    if img.max() < MIN_CONTRAST:
        raise ImageError("the image is blank: no digit found")
    rows, cols = np.flatnonzero(img.max(1) > 0.1 * img.max()), np.flatnonzero(img.max(0) > 0.1 * img.max())
    img = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    from PIL import Image

    h, w = img.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(
        Image.fromarray((img / img.max() * 255).astype(np.uint8)).resize(size, Image.LANCZOS), dtype=np.float64
    )
    out = np.zeros((28, 28))
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    total = out.sum()
    if total > 0:  # shift the centre of mass to the middle, as MNIST did
        cy = (out.sum(1) * np.arange(28)).sum() / total
        cx = (out.sum(0) * np.arange(28)).sum() / total
        dy, dx = int(round(13.5 - cy)), int(round(13.5 - cx))
        dy = int(np.clip(dy, -top, 28 - top - small.shape[0]))
        dx = int(np.clip(dx, -left, 28 - left - small.shape[1]))
        out = np.roll(out, (dy, dx), axis=(0, 1))
    return np.clip(out, 0, 255).astype(np.uint8)


def corpus():
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    digits = data._embedded()[0][::25]  # 200 real MNIST digits
    for k, digit in enumerate(digits):
        yield "mnist", digit
        if k % 4 == 0:
            yield "inverted", 255 - digit
            w, h = int(rng.integers(30, 300)), int(rng.integers(30, 300))
            yield "scaled", np.asarray(Image.fromarray(digit).resize((w, h), Image.BILINEAR))
            canvas = np.full((90, 70), 255, np.uint8)
            y, x = int(rng.integers(0, 62)), int(rng.integers(0, 42))
            canvas[y : y + 28, x : x + 28] = 255 - digit
            yield "on-paper", canvas
            yield "float", digit / 255.0
            yield "float32-noisy", (digit / 255.0 + rng.normal(0, 0.02, digit.shape)).astype(np.float32)
            yield "16bit", digit.astype(np.uint16) * 257
            yield "bool", digit > 128
            yield "int-range", digit.astype(np.int32) * 7 - 300
    for _ in range(40):
        im = Image.new("L", (200, 160), 255)
        points = [(int(x), int(y)) for x, y in rng.integers(10, 150, size=(4, 2))]
        ImageDraw.Draw(im).line(points, fill=int(rng.integers(0, 60)), width=int(rng.integers(2, 20)))
        yield "drawn", np.asarray(im)
    for _ in range(40):
        h, w = int(rng.integers(2, 60)), int(rng.integers(2, 60))
        yield "noise", rng.random((h, w)) * float(rng.choice([1.0, 255.0, 1000.0]))
    yield "edge-cases", np.pad(np.full((3, 3), 255, np.uint8), ((0, 40), (0, 25)))
    yield "edge-cases", np.pad(np.full((1, 30), 200, np.uint8), ((0, 29), (0, 0)))
    yield "edge-cases", np.array([[0, 255], [255, 0]], np.uint8)


KINDS = sorted({kind for kind, _ in corpus()})


@pytest.mark.parametrize("kind", KINDS)
def test_prepare_equals_its_plain_statement(kind):
    cases = [(f"{kind} #{i}", p) for i, (k, p) in enumerate(corpus()) if k == kind]
    prepared = 0
    for name, pixels in cases:
        try:
            expected = reference_prepare(pixels)
        except ImageError as exc:
            with pytest.raises(ImageError) as got:
                images.prepare(pixels)
            assert str(got.value) == str(exc), name
            continue
        out = images.prepare(pixels)
        assert out.dtype == np.uint8 and out.shape == (28, 28), name
        assert np.array_equal(out, expected), f"{name}: {int((out != expected).sum())} pixels differ"
        prepared += out.max() > 0
    assert prepared >= len(cases) // 2, f"{kind}: only {prepared} of {len(cases)} held a digit"


def test_prepare_through_decode_equals_its_plain_statement():
    from PIL import Image

    for digit in data._embedded()[0][1::97]:
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, "PNG")
        gray = images.decode(buffer.getvalue())
        assert np.array_equal(images.prepare(gray), reference_prepare(gray))
