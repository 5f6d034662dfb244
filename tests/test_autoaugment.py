"""The batched AutoAugment CIFAR-10 policy against PIL, operation by operation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from l2b.data.autoaugment import CIFAR10_POLICY, StrongAugment, apply_operation, cifar10_policy

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (3, 12, 10, 3), dtype=np.uint8)  # (N, H, W, C)
IMAGES[1, :, :, :] //= 3  # a dark one: autocontrast and equalize have work to do


def _ours(op: str, magnitude: float, sign: int = 1) -> np.ndarray:
    x = torch.from_numpy(IMAGES).permute(0, 3, 1, 2).double() / 255
    n = len(IMAGES)
    out = apply_operation(x, op, torch.full((n,), float(magnitude)), torch.full((n,), sign))
    return (out.permute(0, 2, 3, 1).numpy() * 255).round().astype(int)


def _pil(fn) -> np.ndarray:
    return np.stack([np.asarray(fn(Image.fromarray(a))) for a in IMAGES]).astype(int)


@pytest.mark.parametrize(
    "op, magnitude, fn",
    [
        ("invert", 0, ImageOps.invert),
        ("solarize", 128, lambda im: ImageOps.solarize(im, 128)),
        ("posterize", 5, lambda im: ImageOps.posterize(im, 5)),
        ("autocontrast", 0, ImageOps.autocontrast),
        ("equalize", 0, ImageOps.equalize),
    ],
)
def test_lookup_operations_equal_pils(op, magnitude, fn):
    np.testing.assert_array_equal(_ours(op, magnitude), _pil(fn))


@pytest.mark.parametrize(
    "op, enhance",
    [
        ("color", ImageEnhance.Color),
        ("contrast", ImageEnhance.Contrast),
        ("brightness", ImageEnhance.Brightness),
        ("sharpness", ImageEnhance.Sharpness),
    ],
)
@pytest.mark.parametrize("magnitude, sign", [(0.5, 1), (0.7, -1)])
def test_enhancements_equal_pils_within_one_level(op, enhance, magnitude, sign):
    ours = _ours(op, magnitude, sign)
    theirs = _pil(lambda im: enhance(im).enhance(1 + sign * magnitude))
    assert np.abs(ours - theirs).max() <= 1  # PIL rounds its blends its own way


def test_translate_moves_whole_pixels_and_fills_grey():
    w = IMAGES.shape[2]
    ours = _ours("translateX", 2 / w)  # two pixels
    # PIL's (1, 0, 2, 0, 1, 0): output pixel (u, v) reads input (u + 2, v)
    np.testing.assert_array_equal(ours[:, :, :-2], IMAGES[:, :, 2:].astype(int))
    assert (ours[:, :, -2:] == 128).all()


def test_zero_angle_and_shear_are_the_identity():
    for op in ("rotate", "shearX", "shearY"):
        np.testing.assert_array_equal(_ours(op, 0.0), IMAGES.astype(int))


def test_the_policy_is_seeded_and_the_strong_view_keeps_shape_and_device():
    assert len(CIFAR10_POLICY) == 25
    x = torch.from_numpy(IMAGES).permute(0, 3, 1, 2).float() / 255
    a = cifar10_policy(x, generator=torch.Generator().manual_seed(3))
    b = cifar10_policy(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    strong = StrongAugment(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    z = (x - 0.5) / 0.25
    s = strong(z, generator=torch.Generator().manual_seed(0))
    assert s.shape == z.shape and s.dtype == z.dtype and not torch.equal(s, z)
    with pytest.raises(ValueError, match="std must be positive"):
        StrongAugment(mean=[0.5], std=[0.0])
