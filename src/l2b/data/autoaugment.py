"""AutoAugment's CIFAR-10 policy (Cubuk et al., CVPR 2019) on whole batches: the strong view.

UNICON (and with it UNICON + L2B) trains on *strong* views of every image: random crop with
4-pixel padding, horizontal flip, then one of the 25 sub-policies of AutoAugment's CIFAR-10
policy, each two operations applied with their own probabilities. The policy here is the one
UNICON's published code applies (``autoaugment.py``, ``CIFAR10Policy``: sub-policies, their
probabilities and magnitude ranges), written as tensor operations on a batch (N, C, H, W) of
pixel values in [0, 1], on whatever device it lives on, every random choice drawn from one
generator in a fixed order (so a run is reproducible and resumable like the weak crop + flip).

Where it differs from the PIL implementation it reproduces: geometric operations resample
bilinearly (PIL: bicubic for shear, nearest for translate and rotate), and every operation
rounds to the 256 levels of an 8-bit image, as PIL's do, on each channel of the given images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .augment import augment_batch

__all__ = ["CIFAR10_POLICY", "StrongAugment", "apply_operation", "cifar10_policy"]

# (p1, operation 1, magnitude index 1, p2, operation 2, magnitude index 2): the 25 sub-policies.
CIFAR10_POLICY: tuple[tuple[float, str, int, float, str, int], ...] = (
    (0.1, "invert", 7, 0.2, "contrast", 6),
    (0.7, "rotate", 2, 0.3, "translateX", 9),
    (0.8, "sharpness", 1, 0.9, "sharpness", 3),
    (0.5, "shearY", 8, 0.7, "translateY", 9),
    (0.5, "autocontrast", 8, 0.9, "equalize", 2),
    (0.2, "shearY", 7, 0.3, "posterize", 7),
    (0.4, "color", 3, 0.6, "brightness", 7),
    (0.3, "sharpness", 9, 0.7, "brightness", 9),
    (0.6, "equalize", 5, 0.5, "equalize", 1),
    (0.6, "contrast", 7, 0.6, "sharpness", 5),
    (0.7, "color", 7, 0.5, "translateX", 8),
    (0.3, "equalize", 7, 0.4, "autocontrast", 8),
    (0.4, "translateY", 3, 0.2, "sharpness", 6),
    (0.9, "brightness", 6, 0.2, "color", 8),
    (0.5, "solarize", 2, 0.0, "invert", 3),
    (0.2, "equalize", 0, 0.6, "autocontrast", 0),
    (0.2, "equalize", 8, 0.6, "equalize", 4),
    (0.9, "color", 9, 0.6, "equalize", 6),
    (0.8, "autocontrast", 4, 0.2, "solarize", 8),
    (0.1, "brightness", 3, 0.7, "color", 0),
    (0.4, "solarize", 5, 0.9, "autocontrast", 3),
    (0.9, "translateY", 9, 0.7, "translateY", 9),
    (0.9, "autocontrast", 2, 0.8, "solarize", 3),
    (0.8, "equalize", 8, 0.1, "invert", 3),
    (0.7, "translateY", 9, 0.9, "autocontrast", 1),
)
"""AutoAugment's CIFAR-10 policy as UNICON's code lists it."""


def _linspace(a: float, b: float) -> list[float]:
    return [a + (b - a) * i / 9 for i in range(10)]


# operation -> the magnitude of each of the 10 magnitude indices (the published ranges)
_RANGES: dict[str, list[float]] = {
    "shearX": _linspace(0, 0.3),
    "shearY": _linspace(0, 0.3),
    "translateX": _linspace(0, 150 / 331),
    "translateY": _linspace(0, 150 / 331),
    "rotate": _linspace(0, 30),
    "color": _linspace(0.0, 0.9),
    "posterize": [float(round(v)) for v in _linspace(8, 4)],
    "solarize": _linspace(256, 0),
    "contrast": _linspace(0.0, 0.9),
    "sharpness": _linspace(0.0, 0.9),
    "brightness": _linspace(0.0, 0.9),
    "autocontrast": [0.0] * 10,
    "equalize": [0.0] * 10,
    "invert": [0.0] * 10,
}
_OPERATIONS = tuple(_RANGES)
_FILL = 128 / 255  # the published fill colour of the geometric operations (grey)


def _levels(x: Tensor) -> Tensor:
    """Round to the 256 levels of an 8-bit image."""
    return (x.clamp(0, 1) * 255).round() / 255


def _gray(x: Tensor) -> Tensor:
    """PIL's "L" conversion (ITU-R 601-2 luma) of RGB images (N, 3, H, W) -> (N, 1, H, W); a
    single-channel image is its own."""
    if x.shape[1] != 3:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return _levels((x * w).sum(1, keepdim=True))


def _blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL ImageEnhance: degenerate + factor * (x - degenerate), per image factor (N,)."""
    return _levels(degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate))


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    """Resample each image through its 2x3 affine map `theta` (N, 2, 3) of normalised output
    coordinates to input coordinates; outside the image, the grey fill."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    ones = torch.ones_like(x[:, :1])
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _levels(out + (1 - inside) * _FILL)


def _equalize(x: Tensor) -> Tensor:
    """PIL ImageOps.equalize per image and channel: the cumulative histogram of the 256 levels,
    spread evenly (step = (count - count of the last level present) // 255; unchanged when 0)."""
    n, c, h, w = x.shape
    v = (x * 255).round().long().reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, v, torch.ones_like(v))
    last = torch.where(hist > 0, torch.arange(256, device=x.device), torch.full_like(hist, -1)).max(1).values
    step = (h * w - hist.gather(1, last.clamp_min(0).view(-1, 1)).squeeze(1)) // 255
    # lut[i] = (step // 2 + number of pixels below level i) // step
    below = torch.cumsum(hist, 1) - hist
    lut = ((step.view(-1, 1) // 2 + below) // step.clamp_min(1).view(-1, 1)).clamp(0, 255)
    out = lut.gather(1, v).to(x.dtype) / 255
    keep = (step == 0).view(-1, 1)
    return torch.where(keep, x.reshape(n * c, h * w), out).view(n, c, h, w)


def _autocontrast(x: Tensor) -> Tensor:
    """PIL ImageOps.autocontrast (no cut-off) per image and channel: its lookup table,
    int(v * 255 / (hi - lo) - lo * 255 / (hi - lo)) on the 8-bit values, in float64 as PIL
    computes it; a channel with one value is left as it is."""
    v = (x * 255).round().double()
    lo = v.amin(dim=(2, 3), keepdim=True)
    hi = v.amax(dim=(2, 3), keepdim=True)
    scale = 255.0 / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    mapped = torch.trunc(v * scale + (-lo * scale)).clamp(0, 255)
    return torch.where(hi > lo, mapped, v).to(x.dtype) / 255


def _sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """PIL ImageEnhance.Sharpness: blend with the image smoothed by PIL's SMOOTH kernel
    ([[1,1,1],[1,5,1],[1,1,1]] / 13), whose border pixels stay the image's own."""
    c = x.shape[1]
    k = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=x.dtype, device=x.device) / 13
    smooth = _levels(F.conv2d(x, k.expand(c, 1, 3, 3), padding=1, groups=c))
    border = torch.ones_like(x[:1, :1], dtype=torch.bool)
    border[..., 1:-1, 1:-1] = False
    return _blend(torch.where(border, x, smooth), x, factor)


def apply_operation(x: Tensor, op: str, magnitude: Tensor, sign: Tensor) -> Tensor:
    """Operation `op` on every image of `x` (N, C, H, W) in [0, 1], with its magnitude (N,) and
    random sign (N,) of +-1 for the signed operations."""
    n = x.shape[0]
    m = magnitude.to(x.dtype) * sign.to(x.dtype)
    eye = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(n, 2, 3).clone()
    h, w = x.shape[2], x.shape[3]
    if op in ("shearX", "shearY"):
        # PIL's (1, m, 0, 0, 1, 0) maps output pixel (u, v) to input (u + m v, v): in normalised
        # coordinates the same shear, scaled by the aspect ratio
        if op == "shearX":
            eye[:, 0, 1] = m * h / w
        else:
            eye[:, 1, 0] = m * w / h
        return _affine(x, eye)
    if op == "translateX":
        eye[:, 0, 2] = 2 * m  # a shift of m * width pixels: 2 m in [-1, 1] coordinates
        return _affine(x, eye)
    if op == "translateY":
        eye[:, 1, 2] = 2 * m
        return _affine(x, eye)
    if op == "rotate":  # PIL rotates counter-clockwise by the angle
        a = m * math.pi / 180
        cos, sin = torch.cos(a), torch.sin(a)
        theta = torch.stack(
            [
                torch.stack([cos, -sin * h / w, torch.zeros_like(a)], 1),
                torch.stack([sin * w / h, cos, torch.zeros_like(a)], 1),
            ],
            1,
        )
        return _affine(x, theta)
    if op == "color":
        return _blend(_gray(x).expand_as(x), x, 1 + m)
    if op == "contrast":
        mean = (_gray(x) * 255).mean(dim=(1, 2, 3), keepdim=True)
        degenerate = ((mean + 0.5).floor() / 255).expand_as(x)
        return _blend(degenerate, x, 1 + m)
    if op == "brightness":
        return _blend(torch.zeros_like(x), x, 1 + m)
    if op == "sharpness":
        return _sharpness(x, 1 + m)
    if op == "posterize":  # keep the top `bits` bits of every 8-bit value
        q = (2.0 ** (8 - magnitude.round())).to(x.dtype).view(-1, 1, 1, 1)
        return torch.floor((x * 255).round() / q) * q / 255
    if op == "solarize":  # invert every value at or above the threshold
        threshold = magnitude.to(x.dtype).view(-1, 1, 1, 1) / 255
        return torch.where(x >= threshold, 1 - x, x)
    if op == "autocontrast":
        return _autocontrast(x)
    if op == "equalize":
        return _equalize(x)
    if op == "invert":
        return 1 - x
    raise ValueError(f"unknown operation {op!r}; known: {', '.join(_OPERATIONS)}")


def cifar10_policy(x: Tensor, *, generator: torch.Generator | None) -> Tensor:
    """One random sub-policy of :data:`CIFAR10_POLICY` per image of `x` (N, C, H, W), pixel
    values in [0, 1]. Drawn from `generator` in this order: the sub-policies (N,), whether each
    of their two operations applies (N, 2), the signs of the signed operations (N, 2)."""
    if x.dim() != 4:
        raise ValueError(f"cifar10_policy needs a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n == 0:
        return x.clone()
    dev = generator.device if generator is not None else torch.device("cpu")
    choice = torch.randint(len(CIFAR10_POLICY), (n,), generator=generator, device=dev).cpu()
    draws = torch.rand(n, 2, generator=generator, device=dev).cpu()
    signs = (torch.randint(2, (n, 2), generator=generator, device=dev).cpu() * 2 - 1).to(x.device)
    out = _levels(x)
    for stage in (0, 1):
        ops = [CIFAR10_POLICY[int(i)][1 + 3 * stage] for i in choice]
        p = torch.tensor([CIFAR10_POLICY[int(i)][3 * stage] for i in choice])
        mag = torch.tensor([_RANGES[o][CIFAR10_POLICY[int(i)][2 + 3 * stage]] for o, i in zip(ops, choice)])
        applies = draws[:, stage] < p
        for op in sorted(set(ops)):
            rows = torch.tensor([k for k, o in enumerate(ops) if o == op and bool(applies[k])], dtype=torch.long)
            if len(rows):
                dev_rows = rows.to(x.device)
                out[dev_rows] = apply_operation(out[dev_rows], op, mag[rows].to(x.device), signs[dev_rows, stage])
    return out


class StrongAugment:
    """The strong view of a batch of standardised images: back to pixel values with the data's
    `mean` and `std` (per channel), random crop (4-pixel black padding) and flip, AutoAugment's
    CIFAR-10 policy (:func:`cifar10_policy`), standardised again. Call as
    ``strong(x, generator=g)`` on (N, C, H, W), like :func:`l2b.data.augment_batch`."""

    def __init__(self, mean, std):
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        if not bool((self.std > 0).all()):
            raise ValueError(f"std must be positive, got {std!r}")

    def __call__(self, x: Tensor, *, generator: torch.Generator | None) -> Tensor:
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        pixels = _levels(x * std + mean)
        pixels = augment_batch(pixels, generator=generator)  # zero padding: black, as published
        return (cifar10_policy(pixels, generator=generator) - mean) / std
