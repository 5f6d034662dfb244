"""Mask-noise simulators: pure, seeded functions from clean masks to noisy ones.

Each takes masks (N, H, W) of class indices (0 = background) and a ``numpy.random.Generator`` and
returns new masks of the same shape and dtype; the inputs are never changed. A K-class mask is
corrupted one foreground class at a time (its binary mask, painted back in class order).
:func:`make_mask_noise` runs one by name (:data:`MASK_NOISE`) from a seed and reports the
realised noise: each image's Dice of noisy against clean, their mean, and the share of pixels
that changed.

- ``paper`` — the recipe of the L2B segmentation variant (github.com/yuyinzhou/L2B,
  L2B_segmentation/data_preprocess.py), on a mask with more than 300 foreground pixels: rotate it
  by an integer angle in [-20, 20] degrees, erode or dilate it (probability 0.5 each) with a
  square kernel of 7, 14, 21, 28 or 35 px (probabilities 0.1, 0.1, 0.3, 0.2, 0.3), and with
  probability 0.5 replace it by the ellipse of its bounding box when more than 300 pixels remain.
  As published, a mask of 300 foreground pixels or fewer becomes empty. The pixel sizes are the
  published ones at 144 x 144; other sizes scale them (kernel sides with the image side, the
  300-pixel rule with its area: ``reference_size``).
- ``boundary`` — the boundary moved by k px: dilated (``mode="dilate"``), eroded, or either with
  probability 0.5 per mask (``"random"``).
- ``drop`` — each connected object removed with probability p.
- ``spurious`` — n blobs (ellipses of random size and place, at most ``max_radius`` px) of a
  random foreground class added per image.
- ``coarse`` — each connected object replaced by its bounding box (``shape="box"``) or its convex
  hull (``"polygon"``): the outline an annotator in a hurry draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ..registry import Registry
from .metrics import dice_per_image

__all__ = ["MASK_NOISE", "MaskNoise", "make_mask_noise", "mask_noise_report"]

MASK_NOISE: Registry[Callable[..., np.ndarray]] = Registry("mask noise")
"""The mask-noise simulators by name (:class:`l2b.registry.Registry`)."""

PAPER_KERNELS = (7, 14, 21, 28, 35)
PAPER_KERNEL_PROBS = (0.1, 0.1, 0.3, 0.2, 0.3)


def _check(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3 or not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(f"masks must be integer class indices of shape (N, H, W), got {masks.dtype} {masks.shape}")
    if masks.size and masks.min() < 0:
        raise ValueError(f"masks must be class indices >= 0, got {int(masks.min())}")
    return masks


def _per_class(masks: np.ndarray, corrupt: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply `corrupt` (a binary (H, W) mask -> binary mask) to each foreground class of each
    mask, painting the results back in class order over background."""
    masks = _check(masks)
    out = np.zeros_like(masks)
    for n, mask in enumerate(masks):
        for k in np.unique(mask):
            if k == 0:
                continue
            out[n][corrupt(mask == k)] = k
    return out


def _square(side: int) -> np.ndarray:
    return np.ones((max(1, side), max(1, side)), dtype=bool)


def _ellipse_of_box(binary: np.ndarray) -> np.ndarray:
    """The ellipse inscribed in the mask's bounding box (as the published code draws it)."""
    rows, cols = np.flatnonzero(binary.any(1)), np.flatnonzero(binary.any(0))
    yc, xc = (rows[0] + rows[-1]) // 2, (cols[0] + cols[-1]) // 2
    ry, rx = max((rows[-1] - rows[0]) / 2, 0.5), max((cols[-1] - cols[0]) / 2, 0.5)
    yy, xx = np.mgrid[: binary.shape[0], : binary.shape[1]]
    return ((yy - yc) / ry) ** 2 + ((xx - xc) / rx) ** 2 <= 1


@MASK_NOISE.register("paper")
def paper_recipe(masks: np.ndarray, rng: np.random.Generator, *, reference_size: int = 144) -> np.ndarray:
    """The published recipe (see the module): rotation, erosion or dilation, bounding ellipse."""
    masks = _check(masks)
    h, w = masks.shape[1:]
    side = math.sqrt(h * w) / reference_size
    min_pixels = 300 * side**2

    def corrupt(binary: np.ndarray) -> np.ndarray:
        if binary.sum() <= min_pixels:
            return np.zeros_like(binary)  # as published: such a mask is left empty
        angle = int(rng.integers(-20, 21))
        noisy = ndimage.rotate(binary.astype(np.uint8), angle, reshape=False, order=0, mode="constant") > 0
        kernel = _square(round(rng.choice(PAPER_KERNELS, p=PAPER_KERNEL_PROBS) * side))
        erode = rng.random() < 0.5
        noisy = ndimage.binary_erosion(noisy, kernel) if erode else ndimage.binary_dilation(noisy, kernel)
        if rng.random() < 0.5 and noisy.sum() > min_pixels:
            noisy = _ellipse_of_box(noisy)
        return noisy

    return _per_class(masks, corrupt)


@MASK_NOISE.register("boundary")
def boundary_shift(masks: np.ndarray, rng: np.random.Generator, *, pixels: int = 3, mode: str = "random") -> np.ndarray:
    """Every object's boundary moved by `pixels` px: out (``dilate``), in (``erode``), or either
    with probability 0.5 per mask and class (``random``)."""
    if mode not in ("dilate", "erode", "random"):
        raise ValueError(f"boundary noise: mode must be dilate, erode or random, got {mode!r}")
    if pixels < 1:
        raise ValueError(f"boundary noise: pixels must be >= 1, got {pixels}")
    kernel = _square(2 * pixels + 1)

    def corrupt(binary: np.ndarray) -> np.ndarray:
        grow = mode == "dilate" or (mode == "random" and rng.random() < 0.5)
        return ndimage.binary_dilation(binary, kernel) if grow else ndimage.binary_erosion(binary, kernel)

    return _per_class(masks, corrupt)


@MASK_NOISE.register("drop")
def drop_objects(masks: np.ndarray, rng: np.random.Generator, *, p: float = 0.3) -> np.ndarray:
    """Each connected object (8-connectivity) removed with probability `p`: a missed annotation."""
    if not 0 <= p <= 1:
        raise ValueError(f"drop noise: p must be in [0, 1], got {p}")

    def corrupt(binary: np.ndarray) -> np.ndarray:
        labelled, count = ndimage.label(binary, structure=np.ones((3, 3)))
        keep = np.concatenate([[False], rng.random(count) >= p])
        return keep[labelled]

    return _per_class(masks, corrupt)


@MASK_NOISE.register("spurious")
def spurious_blobs(
    masks: np.ndarray, rng: np.random.Generator, *, blobs: int = 1, max_radius: int = 6, num_classes: int | None = None
) -> np.ndarray:
    """`blobs` ellipses per image, of radii 2..`max_radius` px at random places, painted with a
    random foreground class (1..K-1, K = `num_classes` or the masks' largest class + 1)."""
    masks = _check(masks)
    k = num_classes if num_classes is not None else max(2, int(masks.max()) + 1)
    out = masks.copy()
    h, w = masks.shape[1:]
    yy, xx = np.mgrid[:h, :w]
    for n in range(len(out)):
        for _ in range(blobs):
            ry, rx = rng.integers(2, max(3, max_radius + 1), size=2)
            yc, xc = rng.integers(0, h), rng.integers(0, w)
            out[n][((yy - yc) / ry) ** 2 + ((xx - xc) / rx) ** 2 <= 1] = rng.integers(1, k)
    return out


@MASK_NOISE.register("coarse")
def coarse_outline(masks: np.ndarray, rng: np.random.Generator, *, shape: str = "box") -> np.ndarray:
    """Each connected object replaced by its bounding box (``box``) or convex hull (``polygon``)."""
    if shape not in ("box", "polygon"):
        raise ValueError(f"coarse noise: shape must be box or polygon, got {shape!r}")

    def corrupt(binary: np.ndarray) -> np.ndarray:
        labelled, count = ndimage.label(binary, structure=np.ones((3, 3)))
        out = np.zeros_like(binary)
        for sl, i in zip(ndimage.find_objects(labelled), range(1, count + 1)):
            if shape == "box":
                out[sl] = True
                continue
            ys, xs = np.nonzero(labelled == i)
            canvas = Image.new("1", binary.shape[::-1], 0)
            points = [(float(x), float(y)) for y, x in zip(ys, xs)]
            hull = _hull(points)
            if len(hull) >= 3:
                ImageDraw.Draw(canvas).polygon(hull, fill=1, outline=1)
            out |= np.asarray(canvas, dtype=bool)
            out |= labelled == i
        return out

    return _per_class(masks, corrupt)


def _hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Convex hull of 2-D points (Andrew's monotone chain), counter-clockwise."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    upper: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


@dataclass(frozen=True)
class MaskNoise:
    """Noisy masks and how noisy they came out.

    Attributes
    ----------
    masks : np.ndarray, shape (N, H, W)
        The noisy masks.
    dice : np.ndarray, shape (N,)
        Each image's Dice of noisy against clean (mean over foreground classes).
    mean_dice : float
        Their mean: the realised noise level (1 = no noise).
    pixel_error : float
        The share of pixels whose class changed.
    changed : np.ndarray, shape (N,) bool
        Images with at least one changed pixel.
    """

    masks: np.ndarray
    dice: np.ndarray
    mean_dice: float
    pixel_error: float
    changed: np.ndarray


def mask_noise_report(clean: np.ndarray, noisy: np.ndarray, num_classes: int | None = None) -> MaskNoise:
    """The realised noise of `noisy` against `clean` masks (N, H, W)."""
    clean, noisy = _check(clean), _check(noisy)
    k = num_classes if num_classes is not None else max(2, int(max(clean.max(), noisy.max())) + 1)
    dice = dice_per_image(noisy, clean, k).mean(1).numpy()
    changed = (noisy != clean).reshape(len(clean), -1)
    return MaskNoise(
        masks=noisy,
        dice=dice,
        mean_dice=float(dice.mean()) if len(dice) else 1.0,
        pixel_error=float(changed.mean()) if changed.size else 0.0,
        changed=changed.any(1),
    )


def make_mask_noise(name: str, masks: np.ndarray, *, seed: int = 0, **options) -> MaskNoise:
    """Noisy copies of `masks` (N, H, W) by the simulator `name` (:data:`MASK_NOISE`) with
    `options`, drawn from `seed`, and the realised noise."""
    noisy = MASK_NOISE.get(name)(masks, np.random.default_rng(seed), **options)
    return mask_noise_report(masks, noisy)
