"""Batched augmentation of small in-memory images (CIFAR-style), as tensor operations on a whole
batch on whatever device it lives on: no Python loop over examples."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor,
    *,
    generator: torch.Generator | None,
    crop_padding: int = 4,
    flip: bool = True,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Random crop after padding, and random horizontal flip, independently for every example.

    Each image of ``x`` (N, C, H, W) is padded by ``crop_padding`` pixels on every side (zeros,
    or ``padding_mode="reflect"``), an H x W window at a uniformly random offset in
    [0, 2 * crop_padding]^2 is cut out, and with probability 1/2 (``flip``) mirrored left-right.

    The pad is done once for the batch; the windows are then read with one ``torch.gather`` over
    the flattened padded images, whose index carries each example's offsets (and, with its
    columns reversed, its flip). The random
    offsets and flips are drawn from ``generator`` on the generator's device and moved to
    ``x``'s, so a CPU generator gives the same augmentation for a batch on CPU or GPU; the same
    generator state gives the same result.

    Returns a new tensor of the same shape, dtype and device (``x`` is not modified).
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch needs a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be non-negative, got {crop_padding}")
    if padding_mode not in ("zeros", "reflect"):
        raise ValueError(f"padding_mode must be 'zeros' or 'reflect', got {padding_mode!r}")
    n, c, h, w = x.shape
    p = int(crop_padding)
    if padding_mode == "reflect" and (p >= h or p >= w):
        raise ValueError(f"reflect padding of {p} needs images larger than {p} pixels, got {h}x{w}")
    if n == 0 or (p == 0 and not flip):
        return x.clone()
    gen_device = generator.device if generator is not None else torch.device("cpu")
    # Draw in a fixed order on the generator's device: offsets (N, 2), then flips (N,).
    offsets = torch.randint(0, 2 * p + 1, (n, 2), generator=generator, device=gen_device).to(x.device)
    flips = (torch.rand(n, generator=generator, device=gen_device) < 0.5).to(x.device) if flip else None

    if p > 0:
        padded = F.pad(x, (p, p, p, p), mode="constant" if padding_mode == "zeros" else "reflect")
    else:
        padded = x
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # (N, H) rows of the padded image
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # (N, W) columns
    if flips is not None:
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    hp, wp = padded.shape[2], padded.shape[3]
    # One gather over the flattened padded images; the (N, 1, H*W) index is broadcast over channels.
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, hp * wp).gather(2, index).view(n, c, h, w)


class FeatureNoise:
    """Gaussian noise of standard deviation `std` added to every input: the documented stand-in
    for image augmentation on data without a meaningful one (digits' 8x8 images, feature vectors).

    Call as ``noise(x, generator=g)`` on a batch (N, ...); the noise is drawn from `generator` on
    its device and moved to ``x``'s, like :func:`augment_batch`. This is *not* the augmentation
    any published method used: methods that need two views of a batch (DivideMix) get two noisy
    copies instead of two crops.
    """

    def __init__(self, std: float):
        if not std > 0:
            raise ValueError(f"feature noise std must be positive, got {std!r}")
        self.std = float(std)

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None) -> torch.Tensor:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(x.shape, generator=generator, device=gen_device, dtype=x.dtype)
        return x + self.std * noise.to(x.device)
