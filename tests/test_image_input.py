"""Images as users have them: transparency, floats, 16-bit, one pixel, every PIL mode and format
(hypothesis), random bytes, any array into prepare(), constant images."""

import io

import numpy as np
import pytest

from lenet_ext import data, images

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def a_digit(offline_env):
    ds = data.load(log=lambda m: None)
    i = int((ds.test.labels == 7).nonzero()[0])
    return ((ds.test.images[i, 0].numpy() * data.STD + data.MEAN).clip(0, 1) * 255).round().astype(np.uint8)


def correlation(a, b):
    return np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1]


def encode(im, fmt="PNG"):
    buffer = io.BytesIO()
    im.save(buffer, format=fmt)
    return buffer.getvalue()


def opaque_reference(digit, size=(112, 112)):
    """The preparation of the same digit as a plain white-on-black grayscale image."""
    from PIL import Image

    return images.prepare(np.asarray(Image.fromarray(digit).resize(size, Image.BILINEAR)))


@pytest.mark.parametrize("ink", [255, 0], ids=["white-ink", "black-ink"])
def test_digit_on_transparent_background(a_digit, ink):
    from PIL import Image

    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = ink
    rgba[..., 3] = a_digit  # the digit is where the image is opaque
    big = Image.fromarray(rgba, "RGBA").resize((112, 112), Image.BILINEAR)
    prepared = images.prepare(images.decode(encode(big)))
    assert correlation(prepared, opaque_reference(a_digit)) > 0.99
    assert correlation(prepared, a_digit) > 0.5


def test_float_image_in_0_1(a_digit):
    from PIL import Image

    im = Image.fromarray((a_digit / 255.0).astype(np.float32), "F").resize((112, 112), Image.BILINEAR)
    prepared = images.prepare(images.decode(encode(im, "TIFF")))
    assert correlation(prepared, opaque_reference(a_digit)) > 0.99
    assert np.array_equal(images.prepare(a_digit / 255.0), images.prepare(a_digit))  # a float array too


def test_sixteen_bit_image(a_digit):
    from PIL import Image

    im = Image.frombytes("I;16", (28, 28), (a_digit.astype("<u2") * 257).tobytes())
    assert np.array_equal(images.prepare(images.decode(encode(im))), images.prepare(a_digit))


def test_one_pixel_image_message():
    with pytest.raises(images.ImageError, match="1 x 1 pixels: too small"):
        images.prepare(np.zeros((1, 1)))


MODES = [
    "1",
    "L",
    "P",
    "RGB",
    "RGBA",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "I",
    "F",
    "LA",
    "PA",
    "RGBX",
    "RGBa",
    "La",
    "I;16",
    "I;16B",
    "I;16L",
    "I;16N",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(MODES),
    w=st.integers(1, 70),
    h=st.integers(1, 70),
    seed=st.integers(0, 2**16),
    fmt=st.sampled_from(["PNG", "TIFF", "BMP", "GIF", "JPEG", "WEBP"]),
)
def test_every_mode_and_format_decodes_or_fails_cleanly(mode, w, h, seed, fmt):
    from PIL import Image

    rng = np.random.default_rng(seed)
    im = Image.frombytes(mode, (w, h), rng.integers(0, 256, w * h * 8, dtype=np.uint8).tobytes())
    try:
        blob = encode(im, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        blob = None  # PIL cannot write this mode in this format: use the image as decode's caller would
    try:
        pixels = images.decode(blob) if blob is not None else None
        if pixels is not None:
            assert pixels.ndim == 2 and np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 255
            out = images.prepare(pixels)
            assert out.shape == (28, 28) and out.dtype == np.uint8
    except images.ImageError:
        pass


@settings(max_examples=80, deadline=None)
@given(blob=st.binary(max_size=2000))
def test_random_bytes_are_not_an_image(blob):
    with pytest.raises(images.ImageError):
        images.decode(blob)


@settings(max_examples=80, deadline=None)
@given(
    h=st.integers(1, 80),
    w=st.integers(1, 80),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(["uint8", "uint16", "int32", "float32", "float64", "bool"]),
    scale=st.sampled_from([1.0, 1e-3, 255.0, 1e6, -1.0]),
)
def test_prepare_takes_any_array(h, w, seed, dtype, scale):
    rng = np.random.default_rng(seed)
    values = rng.random((h, w)) * scale
    if dtype == "bool":
        arr = values > 0.5 * scale
    elif dtype.startswith(("uint", "int")):
        arr = np.clip(values, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
    else:
        arr = values.astype(dtype)
    try:
        out = images.prepare(arr)
    except images.ImageError:
        return
    assert out.shape == (28, 28) and out.dtype == np.uint8 and out.max() > 0


@pytest.mark.parametrize("value, dtype", [(300.0, np.float64), (-5.0, np.float32), (1000, np.int32), (0.5, np.float64)])
def test_constant_image_is_blank(value, dtype):
    """A constant array, inside 0..255 or out of it, holds no digit: the one-line ImageError."""
    with pytest.raises(images.ImageError, match="blank"):
        images.prepare(np.full((28, 28), value, dtype=dtype))
