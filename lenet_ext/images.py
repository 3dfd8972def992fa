"""Digit images as the model reads them: decode() any image file or bytes (bounded: images over
25 megapixels are refused, and every image is reduced to at most 1024 pixels a side first), and
prepare() a grayscale array as MNIST's digits were (background black, the digit scaled into a
20x20 box and centred by its centre of mass in 28x28). Used by predict and serve."""

import io
import warnings
from typing import Tuple, Union

import numpy as np

from .errors import UserError

MAX_PIXELS = 25_000_000  # larger images are refused (a 25 MP RGBA image is 100 MB decoded)
WORK_SIDE = 1024  # images are reduced to at most this many pixels a side before preparation
MIN_CONTRAST = 8.0  # of 255: below this the image holds no digit (a blank or noise-only image)


class ImageError(UserError, ValueError):
    """An image file that cannot be read or holds no digit."""


def _to_byte_range(img: np.ndarray, floating: bool) -> np.ndarray:
    """Pixel values onto 0..255: floats in 0..1 (when the source is floating point) times 255; any
    other range that leaves 0..255 stretched onto it (a constant one becomes 0: a blank image)."""
    if img.size == 0:
        return img
    lo, hi = float(img.min()), float(img.max())
    if floating and lo >= 0.0 and hi <= 1.0:
        return img * 255.0
    if lo < 0.0 or hi > 255.0:
        return (img - lo) / max(hi - lo, 1e-12) * 255.0
    return img


def _border_median(img: np.ndarray) -> float:
    """The median of the image's four edges (np.median's value: the mean of the middle two, as
    the edge count 2 (h + w) is even), from one sort of the edge pixels."""
    edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    edge.sort()
    mid = len(edge) // 2
    return (edge[mid - 1] + edge[mid]) / 2.0


def prepare(pixels: np.ndarray) -> np.ndarray:
    """A 2-D grayscale array (any size; 0..255, or floats in 0..1) -> 28x28 uint8, white digit on
    black, MNIST-style. ImageError if it is not a usable 2-D image or holds no digit.

    The steps: onto 0..255; inverted when the edges are light (a dark digit on paper); the edges'
    median subtracted as the background; cropped to the pixels above 10% of the brightest; scaled
    (Lanczos) so that the longer side is 20; placed in 28x28 with its centre of mass moved to the
    middle (as far as the 28x28 frame allows)."""
    img = np.asarray(pixels)
    if img.ndim != 2:
        raise ImageError(f"expected a 2-D grayscale image, got an array of shape {img.shape}")
    if min(img.shape) < 2:
        raise ImageError(
            f"the image is {img.shape[1]} x {img.shape[0]} pixels: too small to hold a digit (at least 2 x 2)"
        )
    floating = np.issubdtype(img.dtype, np.floating)
    img = img.astype(np.float64) * 255.0 if img.dtype == bool else img.astype(np.float64)
    if not np.isfinite(img).all():
        raise ImageError("the image holds NaN or infinite pixel values")
    img = _to_byte_range(img, floating)
    background = _border_median(img)
    if background > 127:  # dark digit on a light background: invert
        img = 255.0 - img
        background = _border_median(img)
    img -= background
    np.clip(img, 0, 255, out=img)  # background to 0
    peak = img.max()
    if peak < MIN_CONTRAST:
        raise ImageError("the image is blank: no digit found")
    rows, cols = np.flatnonzero(img.max(1) > 0.1 * peak), np.flatnonzero(img.max(0) > 0.1 * peak)
    img = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    from PIL import Image

    h, w = img.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray((img / peak * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS))
    sh, sw = small.shape
    top, left = (28 - sh) // 2, (28 - sw) // 2
    total = int(small.sum(dtype=np.int64))
    if total > 0:  # shift the centre of mass to the middle, as MNIST did
        cy = (small.sum(1, dtype=np.int64) * np.arange(top, top + sh)).sum() / total
        cx = (small.sum(0, dtype=np.int64) * np.arange(left, left + sw)).sum() / total
        top += min(max(int(round(13.5 - cy)), -top), 28 - top - sh)
        left += min(max(int(round(13.5 - cx)), -left), 28 - left - sw)
    out = np.zeros((28, 28), np.uint8)
    out[top : top + sh, left : left + sw] = small
    return out


_ALPHA_MODES = ("LA", "PA", "RGBA", "RGBa")
_NUMERIC_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def _gray_and_alpha(im) -> Tuple[object, object]:
    """(grayscale image in mode L or F, alpha in mode L or None) for an image of any PIL mode."""
    if im.mode == "La":  # premultiplied: undo it by hand (PIL converts La to nothing else)
        arr = np.asarray(im, dtype=np.float64)
        alpha = arr[..., 1]
        gray = np.where(alpha > 0, arr[..., 0] * 255.0 / np.maximum(alpha, 1), 0.0)
        from PIL import Image

        return Image.fromarray(gray.astype(np.float32), "F"), Image.fromarray(alpha.astype(np.uint8), "L")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 255:
            return rgba.convert("L"), alpha
        return rgba.convert("L"), None
    if im.mode in _NUMERIC_MODES:
        return im.convert("F"), None
    if im.mode == "LAB":
        return im.getchannel(0), None
    return im.convert("L"), None


def _reduce(im):
    factor = max(1, -(-max(im.size) // WORK_SIDE))
    return im.reduce(factor) if factor > 1 else im


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """A digit on a transparent background, flattened onto white or onto black: whichever shows
    it with more contrast (black ink on white, or white ink on black)."""
    a = alpha / 255.0
    on_white, on_black = a * gray + (1 - a) * 255.0, a * gray
    return np.clip(on_white if on_white.std() >= on_black.std() else on_black, 0.0, 255.0)


def decode(source: Union[str, bytes], name: str = "") -> np.ndarray:
    """An image file (path or bytes) -> 2-D float64 grayscale in 0..255, at most WORK_SIDE pixels a
    side; ImageError with a one-line reason for anything that is not a usable image."""
    from PIL import Image

    name = name or (source if isinstance(source, str) else "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                if im.format == "JPEG":
                    im.draft("L", (WORK_SIDE, WORK_SIDE))  # decode at 1/2, 1/4 or 1/8 scale
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(
                        f"{name}: {w} x {h} pixels ({w * h / 1e6:.0f} megapixels) is more than the "
                        f"{MAX_PIXELS // 1_000_000} megapixels this reads; scale it down first"
                    )
                if min(w, h) < 2:
                    raise ImageError(
                        f"{name}: the image is {w} x {h} pixels: too small to hold a digit (at least 2 x 2)"
                    )
                im.load()
                gray, alpha = _gray_and_alpha(im)
                with np.errstate(invalid="ignore"):
                    gray = np.asarray(_reduce(gray), dtype=np.float64)
                if not np.isfinite(gray).all():
                    raise ImageError(f"{name}: the image holds NaN or infinite pixel values")
                if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                    gray = gray / 257.0
                elif im.mode in ("I", "F"):
                    gray = _to_byte_range(gray, floating=True)
                if alpha is not None:
                    gray = _composite(gray, np.asarray(_reduce(alpha), dtype=np.float64))
                return gray
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError(f"{name}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{name}: is a folder, expected an image file") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{name}: refused: more than the {MAX_PIXELS // 1_000_000} megapixels this reads, a "
            f"possible decompression bomb ({exc})"
        ) from exc
    except MemoryError as exc:
        raise ImageError(f"{name}: too large to decode") from exc
    except Exception as exc:  # PIL raises many kinds of errors for corrupt or unknown files
        from PIL import UnidentifiedImageError

        if isinstance(exc, UnidentifiedImageError):
            raise ImageError(f"{name}: cannot read as an image (not a format PIL knows, or not an image)") from None
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ImageError(f"{name}: cannot read as an image ({reason})") from exc


def read_image(path: str) -> np.ndarray:
    """decode() of an image file."""
    return decode(path, path)
