"""A synthetic segmentation data set that a threshold cannot solve (no download needed).

Each image holds one to three objects of class 1 (and, with ``classes=3``, objects of class 2)
on a cluttered background. What marks an object is its *texture*, not its brightness:

- background: a smooth random field plus fine noise;
- class 1: an ellipse or polygon filled with stripes of random orientation and period;
- class 2: a checkerboard of random cell size;
- distractors (background, unlabelled): ellipses of speckle with the objects' mean and spread;
- occlusion: a bar of background texture across part of an object (its pixels are background
  in the mask: what is hidden is not labelled);
- per image, a random gain and offset and Gaussian noise.

Every region has about the same mean intensity, so the best single threshold scores a low
Dice (the tests check it), while a small U-Net learns the textures.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .data import SegmentationData

__all__ = ["make_shapes"]


def _shape_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random ellipse or polygon (H, W) bool, between a tenth and a third of the side across."""
    canvas = Image.new("1", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = rng.uniform(0.2, 0.8, size=2) * size
    r = rng.uniform(0.1, 0.22) * size
    if rng.random() < 0.5:
        rx, ry = r * rng.uniform(0.6, 1.4, size=2)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
    else:
        k = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = r * rng.uniform(0.6, 1.3, k)
        draw.polygon([(cx + a * np.cos(t), cy + a * np.sin(t)) for a, t in zip(radii, angles)], fill=1)
    return np.asarray(canvas, dtype=bool)


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    theta, period = rng.uniform(0, np.pi), rng.uniform(3.0, 6.0)
    return np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)


def _checker(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    cell = int(rng.integers(2, 5))
    return np.where(((yy // cell) + (xx // cell)) % 2 == 0, 1.0, -1.0)


def make_shapes(n: int, *, size: int = 48, classes: int = 2, seed: int = 0) -> SegmentationData:
    """`n` images (n, 1, size, size) in [0, 1] and their masks (n, size, size) of classes
    0..`classes`-1 (2 or 3), drawn from `seed`. Each image is its own case."""
    if classes not in (2, 3):
        raise ValueError(f"make_shapes: classes must be 2 or 3, got {classes}")
    if size < 16:
        raise ValueError(f"make_shapes: size must be at least 16, got {size}")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    for i in range(n):
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma=size / 8)
        img = 0.5 + 0.25 * field / (np.abs(field).max() + 1e-9) + rng.normal(0, 0.08, (size, size))
        mask = np.zeros((size, size), np.int64)
        for _ in range(int(rng.integers(1, 3))):  # distractors first: objects may cover them
            blob = _shape_mask(rng, size)
            img[blob] = 0.5 + 0.3 * rng.normal(size=int(blob.sum())).clip(-1.5, 1.5)
        for _ in range(int(rng.integers(1, 4))):
            k = 1 if classes == 2 or rng.random() < 0.6 else 2
            obj = _shape_mask(rng, size)
            texture = _stripes(rng, size) if k == 1 else _checker(rng, size)
            img[obj] = 0.5 + 0.3 * texture[obj]
            mask[obj] = k
        if rng.random() < 0.5 and mask.any():  # a bar of background across part of the objects
            bar = np.zeros((size, size), bool)
            w = int(rng.integers(2, max(3, size // 8)))
            at = int(rng.integers(0, size - w))
            (bar.__setitem__((slice(None), slice(at, at + w)), True) if rng.random() < 0.5 else
             bar.__setitem__((slice(at, at + w), slice(None)), True))  # fmt: skip
            img[bar] = 0.5 + 0.25 * field[bar] / (np.abs(field).max() + 1e-9)
            mask[bar] = 0
        gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)
        img = (img - 0.5) * gain + 0.5 + offset + rng.normal(0, 0.05, (size, size))
        images[i, 0] = np.clip(img, 0, 1)
        masks[i] = mask
    return SegmentationData(
        images=images,
        masks=masks,
        paths=[f"shapes-{seed}#{i}" for i in range(n)],
        mask_paths=[f"shapes-{seed}#{i}" for i in range(n)],
        cases=np.array([f"shapes-{seed}-{i}" for i in range(n)]),
        num_classes=classes,
    )
