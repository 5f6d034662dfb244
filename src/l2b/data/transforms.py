"""Per-image transforms for lazily decoded photographs, written with Pillow and torch only.

Every transform is a callable ``t(image, generator=None)``: ``generator`` is a
``torch.Generator`` (CPU) that supplies all of its randomness, or None for torch's global
generator. :class:`~l2b.data.files.FileListDataset` passes one generator per example, seeded
from the loader's generator, so augmentations are reproducible whatever the number of workers.

    train = compose(random_resized_crop(224), horizontal_flip(), to_tensor(), normalize(mean, std))
    test = compose(resize(256), center_crop(224), to_tensor(), normalize(mean, std))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ._common import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "CenterCrop",
    "Compose",
    "HorizontalFlip",
    "Normalize",
    "RandomResizedCrop",
    "Resize",
    "ToTensor",
    "center_crop",
    "compose",
    "eval_transform",
    "horizontal_flip",
    "normalize",
    "random_resized_crop",
    "resize",
    "to_tensor",
    "train_transform",
]


def _uniform(generator: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _bilinear():
    from PIL import Image

    return Image.Resampling.BILINEAR


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) from an int or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, img, generator: torch.Generator | None = None):
        for t in self.transforms:
            img = t(img, generator)
        return img

    def __repr__(self) -> str:
        return f"Compose({', '.join(repr(t) for t in self.transforms)})"


class RandomResizedCrop:
    """Crop a random region covering ``scale`` of the area with aspect ratio in ``ratio`` (drawn
    log-uniformly), resized to ``size``; after 10 failed draws, the largest central crop whose
    aspect ratio is within ``ratio``. Crop and resize are one Pillow ``resize(box=...)`` call."""

    def __init__(
        self,
        size: int | Sequence[int] = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ):
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        self.size, self.scale, self.ratio = _pair(size), tuple(scale), tuple(ratio)

    def box(self, width: int, height: int, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the crop in an image of the given size."""
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * _uniform(generator, *self.scale)
            aspect = math.exp(_uniform(generator, log_lo, log_hi))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                return left, top, left + w, top + h
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, img, generator: torch.Generator | None = None):
        box = self.box(img.width, img.height, generator)
        return img.resize((self.size[1], self.size[0]), _bilinear(), box=box)

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class Resize:
    """Resize so that the shorter side is ``size`` (int; aspect ratio kept) or to exactly
    (height, width) (pair)."""

    def __init__(self, size: int | Sequence[int] = 256):
        self.size = size if isinstance(size, int) else _pair(size)

    def __call__(self, img, generator: torch.Generator | None = None):
        if isinstance(self.size, int):
            w, h = img.size
            if w <= h:
                new = (self.size, max(1, int(round(h * self.size / w))))
            else:
                new = (max(1, int(round(w * self.size / h))), self.size)
        else:
            new = (self.size[1], self.size[0])
        if new == img.size:
            return img
        return img.resize(new, _bilinear())

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class CenterCrop:
    """Crop the central (height, width) region (zero-padded when the image is smaller)."""

    def __init__(self, size: int | Sequence[int] = 224):
        self.size = _pair(size)

    def __call__(self, img, generator: torch.Generator | None = None):
        h, w = self.size
        left = int(round((img.width - w) / 2))
        top = int(round((img.height - h) / 2))
        return img.crop((left, top, left + w, top + h))

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class HorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, img, generator: torch.Generator | None = None):
        if _uniform(generator) < self.p:
            from PIL import Image

            return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


class ToTensor:
    """PIL image -> float32 tensor (C, H, W) with values in [0, 1]."""

    def __call__(self, img, generator: torch.Generator | None = None) -> torch.Tensor:
        arr = np.asarray(img, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        # Transpose, convert and scale in one numpy pass (single-threaded: torch's thread pool
        # costs more than it saves on one image, badly so when cores are busy).
        out = np.empty((arr.shape[2], arr.shape[0], arr.shape[1]), dtype=np.float32)
        np.multiply(arr.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=out, casting="unsafe")
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """``(x - mean) / std`` per channel on a (C, H, W) or (N, C, H, W) tensor."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        self._inv_std = 1.0 / torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.shape[-3] != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channels, the image has {x.shape[-3]}")
        if x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 3 and not x.requires_grad:
            # one image: per-channel numpy passes (torch's thread pool only adds overhead here)
            a = x.numpy()
            out = np.empty(a.shape, dtype=np.float32)
            for c in range(a.shape[0]):
                np.subtract(a[c], np.float32(self.mean[c]), out=out[c])
                out[c] *= np.float32(1.0 / self.std[c])
            return torch.from_numpy(out)
        mean, inv = self._mean.to(x.device, x.dtype), self._inv_std.to(x.device, x.dtype)
        return (x - mean) * inv

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def compose(*transforms: Callable) -> Compose:
    return Compose(transforms)


def random_resized_crop(
    size: int | Sequence[int] = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> RandomResizedCrop:
    return RandomResizedCrop(size, scale, ratio)


def resize(size: int | Sequence[int] = 256) -> Resize:
    return Resize(size)


def center_crop(size: int | Sequence[int] = 224) -> CenterCrop:
    return CenterCrop(size)


def horizontal_flip(p: float = 0.5) -> HorizontalFlip:
    return HorizontalFlip(p)


def to_tensor() -> ToTensor:
    return ToTensor()


def normalize(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Normalize:
    return Normalize(mean, std)


def train_transform(
    size: int = 224,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """The usual training pipeline for photographs: random resized crop, flip, tensor, normalise."""
    return compose(random_resized_crop(size, scale), horizontal_flip(), to_tensor(), normalize(mean, std))


def eval_transform(
    size: int = 224,
    *,
    resize_to: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """The usual evaluation pipeline: shorter side to ``resize_to`` (default size * 256 / 224),
    central crop of ``size``, tensor, normalise."""
    resize_to = int(round(size * 256 / 224)) if resize_to is None else resize_to
    return compose(resize(resize_to), center_crop(size), to_tensor(), normalize(mean, std))
