"""Distortions of MNIST-style digits, batched on the images' device and seeded: the training loop's
augmentation (random affine maps, elastic fields, stroke thickness) and the robustness study's
families at graded severities (rotation, scale, slant, thickness, shift, elastic, noise, blur, low
resolution, polarity).

Images are normalized float tensors (N, 1, 28, 28) whose background, the smallest value, stays the
background: geometric maps resample around it (the area they bring in from outside the image is
background too), and every distortion keeps shape, dtype and device. Severity 0 is the identity.

The randomness is position-keyed: the random numbers of image j come from a hash of (key, j, what),
computed on the device, rather than from a generator's state. A batch's distortions therefore
depend only on the run's seed, the epoch and the images' epoch positions: the same on every device,
for any split of a batch between processes, and a run stopped mid-epoch resumes bit for bit."""

import functools
import math
from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from .errors import UserError

SIDE = 28
_MASK = 0xFFFFFFFF


class DistortionError(UserError, ValueError):
    """A distortion's parameter out of its range."""


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash of int64 values (their low 32 bits), in int64 without overflow: every
    multiplier is below 2^31, so each product stays below 2^63."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _MASK
    x = x ^ (x >> 16)
    x = (x * 0x297A2D39) & _MASK
    return x ^ (x >> 15)


def uniform(key: torch.Tensor, index: torch.Tensor, stream: int, dtype=torch.float32) -> torch.Tensor:
    """Uniform numbers in [0, 1), one per index (int64 tensor), for a key (an int64 scalar tensor) and
    a stream number (which random quantity this is)."""
    h = _hash32(_hash32(key + stream * 0x9E3779B1) ^ _hash32(index + 0x632BE5AB))
    return (h >> 8).to(dtype) * (1.0 / (1 << 24))


def background(x: torch.Tensor) -> torch.Tensor:
    """Each image's background value (its smallest), shaped (N, 1, 1, 1)."""
    return x.amin(dim=(1, 2, 3), keepdim=True)


def resample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """x read at grid (N, 28, 28, 2; normalized coordinates, align_corners=False), bilinear, with
    the background outside the image."""
    bg = background(x)
    return F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + bg


@functools.lru_cache(maxsize=8)
def _base_grid(dtype: torch.dtype, device: str) -> torch.Tensor:
    """The identity sampling grid as (784, 3) rows (x, y, 1), normalized, align_corners=False."""
    eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=dtype, device=device)
    xy = F.affine_grid(eye, [1, 1, SIDE, SIDE], align_corners=False).reshape(SIDE * SIDE, 2)
    return torch.cat([xy, torch.ones(SIDE * SIDE, 1, dtype=dtype, device=device)], 1)


def affine_theta(angle: torch.Tensor, scale: torch.Tensor, shear: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor):
    """(n, 2, 3) matrices of the maps (per image; angles in degrees, shear as slant: x += tan(shear)
    y, shifts in pixels) that rotate, scale, shear and shift the digit about the image centre:
    M = rotate @ shear * scale. grid_sample reads the output through the inverse, (shear^-1 @
    rotate^-1) / scale after taking the shift off, which is what these hold (normalized units)."""
    a, s = torch.deg2rad(angle), torch.deg2rad(shear)
    cos, sin, tan = torch.cos(a), torch.sin(a), torch.tan(s)
    inv = 1.0 / scale
    i00, i01 = (cos + tan * sin) * inv, (sin - tan * cos) * inv
    i10, i11 = -sin * inv, cos * inv
    tx, ty = dx * (2.0 / SIDE), dy * (2.0 / SIDE)
    return torch.stack([i00, i01, -(i00 * tx + i01 * ty), i10, i11, -(i10 * tx + i11 * ty)], 1).view(-1, 2, 3)


def grid_of(theta: torch.Tensor) -> torch.Tensor:
    """The sampling grid (n, 28, 28, 2) of affine_theta's matrices: one (2n, 3) @ (3, 784) product
    (a batched matmul of n tiny ones costs several times more here)."""
    n = theta.shape[0]
    base = _base_grid(theta.dtype, str(theta.device))
    return (theta.reshape(n * 2, 3) @ base.T).view(n, 2, SIDE * SIDE).transpose(1, 2).reshape(n, SIDE, SIDE, 2)


def gaussian_blur(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """field (N, C, 28, 28) blurred by a Gaussian of sigma pixels (separable, zero outside)."""
    if sigma <= 0:
        return field
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=field.dtype, device=field.device)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    c = field.shape[1]
    field = F.conv2d(field, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(field, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)


def elastic_field(key: torch.Tensor, index: torch.Tensor, alpha: float, sigma: float, dtype, stream: int = 16):
    """Simard et al.'s elastic displacement (N, 28, 28, 2), in grid units: a uniform random field in
    [-1, 1] per pixel and direction, smoothed by a Gaussian of sigma pixels, scaled by alpha pixels."""
    n = index.numel()
    cells = torch.arange(2 * SIDE * SIDE, device=index.device, dtype=torch.int64)
    u = uniform(key, index[:, None] * (2 * SIDE * SIDE) + cells[None, :], stream, dtype)
    field = gaussian_blur((2 * u - 1).view(n, 2, SIDE, SIDE), sigma) * (alpha * 2.0 / SIDE)
    return field.permute(0, 2, 3, 1)


def _window_extreme(x: torch.Tensor, largest: bool) -> torch.Tensor:
    """Each pixel's 3 x 3 maximum (or minimum), outside the image counting as the background: nine
    shifted views of a padded copy (several times faster here than max_pool2d with stride 1)."""
    bg = background(x)
    padded = F.pad(x - bg, (1, 1, 1, 1)) + bg
    pick = torch.maximum if largest else torch.minimum
    out = padded[:, :, 1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                out = pick(out, padded[:, :, dy : dy + SIDE, dx : dx + SIDE])
    return out


def thicken(x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Strokes one pixel thicker where steps > 0 (a 3 x 3 dilation), thinner where < 0 (erosion),
    unchanged where 0; steps (N,) of -1, 0 or 1."""
    s = steps.view(-1, 1, 1, 1)
    return torch.where(s > 0, _window_extreme(x, True), torch.where(s < 0, _window_extreme(x, False), x))


@functools.lru_cache(maxsize=8)
def _gaussian_matrix(sigma: float, dtype: torch.dtype, device: str) -> torch.Tensor:
    return gaussian_matrix(sigma, dtype, device)


def gaussian_matrix(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """The 28 x 28 matrix G whose product G @ f blurs the columns of f by a Gaussian of sigma pixels
    (zero outside the image): G @ f @ G.T blurs a field the way a separable convolution does, in
    two small matrix products."""
    t = torch.arange(SIDE, dtype=torch.float64)
    radius = max(1, int(math.ceil(3 * sigma)))
    d = t[:, None] - t[None, :]
    k = torch.exp(-(d * d) / (2 * sigma * sigma)) * (d.abs() <= radius)
    norm = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2) / (2 * sigma * sigma)).sum()
    return (k / norm).to(dtype=dtype, device=device)


@dataclass(frozen=True)
class Augment:
    """The training distortions (train --augment and its strengths): each image gets a random
    rotation in [-rotate, rotate] degrees, scale in [1 - zoom, 1 + zoom] and slant in [-shear,
    shear] degrees (affine); an elastic field of alpha pixels, Simard's uniform per-pixel field
    smoothed by a Gaussian of sigma pixels (elastic); and with probability `thickness` a stroke one
    pixel thicker or thinner, half each (thickness).

    The training loop draws the random numbers (draws(): per image, from the run's generator at
    the epoch's start; fields(): per batch, from a generator keyed by the run, epoch and batch),
    and __call__ applies them."""

    affine: bool = False
    elastic: bool = False
    rotate: float = 0.0
    zoom: float = 0.0
    shear: float = 0.0
    alpha: float = 0.0
    sigma: float = 4.0
    thickness: float = 0.0

    @classmethod
    def of(cls, config) -> "Augment":
        """The distortions a run's settings (TrainConfig) ask for; nothing for --augment none."""
        kinds = config.augment_kinds() or ()
        return cls(
            affine="affine" in kinds,
            elastic="elastic" in kinds,
            rotate=float(config.rotate),
            zoom=float(config.zoom),
            shear=float(config.shear),
            alpha=float(config.elastic_alpha),
            sigma=float(config.elastic_sigma),
            thickness=float(config.thickness) if "thickness" in kinds else 0.0,
        )

    @property
    def active(self) -> bool:
        return self.affine or self.elastic or self.thickness > 0

    DRAWS = 5  # per image: rotation, scale, slant, thickness (whether), thickness (which way)

    def maps(self, draws: torch.Tensor) -> torch.Tensor:
        """The affine maps (n, 2, 3) (affine_theta) of n images' draws (n, DRAWS) in [0, 1): rotation
        in +-rotate degrees, scale in 1 +- zoom, slant in +-shear degrees; the identity for no
        affine. Made for a whole epoch at its start."""
        d = draws.to(torch.float64)
        zero = torch.zeros_like(d[:, 0])
        if not self.affine:
            return affine_theta(zero, zero + 1, zero, zero, zero).to(draws.dtype)
        angle, scale = (2 * d[:, 0] - 1) * self.rotate, 1 + (2 * d[:, 1] - 1) * self.zoom
        return affine_theta(angle, scale, (2 * d[:, 2] - 1) * self.shear, zero, zero).to(draws.dtype)

    def fields(self, n: int, generator: torch.Generator, dtype, device) -> torch.Tensor:
        """n elastic displacement fields (n, 28, 28, 2) in grid units, from generator."""
        u = torch.rand((n * 2, SIDE, SIDE), generator=generator, dtype=dtype, device=generator.device)
        g = _gaussian_matrix(self.sigma, dtype, str(u.device))
        smooth = g @ (2 * u - 1) @ g.T
        return (smooth * (self.alpha * 2.0 / SIDE)).view(n, 2, SIDE, SIDE).permute(0, 2, 3, 1).to(device)

    def __call__(
        self, x: torch.Tensor, draws: torch.Tensor, maps: torch.Tensor, field: "torch.Tensor | None" = None
    ) -> torch.Tensor:
        """x's images distorted: thickness by their draws (n, DRAWS), then read through their affine
        maps (n, 2, 3; maps()) plus, for elastic, their fields (n, 28, 28, 2)."""
        if not self.active or x.shape[0] == 0:
            return x
        if self.thickness > 0:
            d = draws.to(x.dtype)
            steps = torch.where(d[:, 3] < self.thickness, torch.where(d[:, 4] < 0.5, 1, -1), 0)
            x = thicken(x, steps)
        if not (self.affine or self.elastic):
            return x
        grid = grid_of(maps.to(x.dtype))
        if self.elastic and field is not None:
            grid = grid + field
        return resample(x, grid)


def identity_grid(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype, device=device).expand(n, 2, 3)
    return F.affine_grid(eye, [n, 1, SIDE, SIDE], align_corners=False)


# ------------------------------------------------------------------------------------------------
# The robustness study's families: distort(images, family, severity, seed)
# ------------------------------------------------------------------------------------------------

# Each family's severities (what the number means), from none to strong.
FAMILIES: Dict[str, Tuple[str, Tuple[float, ...]]] = {
    "rotation": ("degrees, each digit turned by +- this (sign at random)", (0, 10, 20, 30, 45)),
    "scale": ("factor, each digit scaled by it or its inverse (at random)", (1.0, 1.15, 1.3, 1.5, 1.75)),
    "slant": ("degrees of shear, +- at random", (0, 10, 20, 30, 40)),
    "thickness": ("pixels of dilation (+) or erosion (-)", (0, -1, 1, 2)),
    "shift": ("pixels, each digit moved this far in a random direction", (0, 2, 4, 6, 8)),
    "elastic": ("alpha (pixels) of an elastic field smoothed by sigma 4", (0, 10, 20, 34, 50)),
    "noise": ("std of Gaussian pixel noise, in units of the ink's range", (0, 0.1, 0.2, 0.3, 0.5)),
    "blur": ("sigma of a Gaussian blur, pixels", (0, 0.5, 1.0, 1.5, 2.0)),
    "low-resolution": ("side the digit is downsampled to, then upsampled back", (28, 20, 14, 10, 7)),
    "polarity": ("fraction of the digits inverted (dark ink on light)", (0, 0.5, 1.0)),
}


def distort(x: torch.Tensor, family: str, severity: float, seed: int = 0) -> torch.Tensor:
    """x's normalized digits under one family of distortion at one severity (FAMILIES), seeded:
    per image random signs and directions from (seed, image index). The identity at severity 0 (1.0
    for scale, 28 for low-resolution)."""
    if family not in FAMILIES:
        raise DistortionError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    if not isinstance(severity, (int, float)) or isinstance(severity, bool) or not math.isfinite(severity):
        raise DistortionError(f"{family}: severity must be a finite number, got {severity!r}")
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, SIDE, SIDE) or not x.is_floating_point():
        raise DistortionError(f"images must be a float (N, 1, 28, 28) tensor, got {tuple(x.shape)} {x.dtype}")
    n, dt, dev = x.shape[0], x.dtype, x.device
    key = torch.tensor(seed, dtype=torch.int64, device=dev)
    index = torch.arange(n, dtype=torch.int64, device=dev)

    def sign(stream):
        return torch.where(uniform(key, index, stream, dt) < 0.5, -1.0, 1.0).to(dt)

    zero = torch.zeros(n, dtype=dt, device=dev)
    if family in ("rotation", "slant", "shift", "scale"):
        if family == "scale":
            if severity < 1:
                raise DistortionError(f"scale: severity must be >= 1, got {severity}")
            if severity == 1:
                return x.clone()
            factor = torch.where(sign(1) > 0, float(severity), 1.0 / float(severity)).to(dt)
            return resample(x, grid_of(affine_theta(zero, factor, zero, zero, zero)))
        if severity == 0:
            return x.clone()
        if family == "rotation":
            return resample(x, grid_of(affine_theta(sign(1) * severity, zero + 1, zero, zero, zero)))
        if family == "slant":
            return resample(x, grid_of(affine_theta(zero, zero + 1, sign(1) * severity, zero, zero)))
        direction = uniform(key, index, 2, dt) * (2 * math.pi)
        dx, dy = severity * torch.cos(direction), severity * torch.sin(direction)
        return resample(x, grid_of(affine_theta(zero, zero + 1, zero, dx, dy)))
    if family == "thickness":
        if severity != int(severity) or abs(severity) > 3:
            raise DistortionError(f"thickness: severity must be a whole number of pixels in -3..3, got {severity}")
        steps = int(severity)
        for _ in range(abs(steps)):
            x = thicken(x, torch.full((n,), 1 if steps > 0 else -1, device=dev))
        return x.clone() if steps == 0 else x
    if family == "elastic":
        if severity < 0:
            raise DistortionError(f"elastic: severity must be >= 0, got {severity}")
        if severity == 0:
            return x.clone()
        return resample(x, identity_grid(n, dt, dev) + elastic_field(key, index, severity, 4.0, dt))
    lo, hi = background(x), x.amax(dim=(1, 2, 3), keepdim=True)
    if family == "noise":
        if severity < 0:
            raise DistortionError(f"noise: severity must be >= 0, got {severity}")
        if severity == 0:
            return x.clone()
        cells = torch.arange(SIDE * SIDE, device=dev, dtype=torch.int64)
        u1 = uniform(key, index[:, None] * (SIDE * SIDE) + cells, 3, dt).clamp_min(1e-7)
        u2 = uniform(key, index[:, None] * (SIDE * SIDE) + cells, 4, dt)
        normal = torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)  # Box-Muller
        return (x + normal.view(n, 1, SIDE, SIDE) * severity * (hi - lo)).clamp(lo, hi)
    if family == "blur":
        if severity < 0:
            raise DistortionError(f"blur: severity must be >= 0, got {severity}")
        if severity == 0:
            return x.clone()
        return gaussian_blur(x - lo, float(severity)) + lo
    if family == "low-resolution":
        if severity != int(severity) or not 2 <= severity <= SIDE:
            raise DistortionError(f"low-resolution: severity must be a side in 2..28 pixels, got {severity}")
        if severity == SIDE:
            return x.clone()
        small = F.interpolate(x, size=(int(severity),) * 2, mode="area")
        return F.interpolate(small, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    # polarity
    if not 0 <= severity <= 1:
        raise DistortionError(f"polarity: severity must be a fraction in 0..1, got {severity}")
    flip = (uniform(key, index, 5, dt) < severity).view(n, 1, 1, 1)
    return torch.where(flip, lo + hi - x, x)
