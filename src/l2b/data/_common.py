"""Helpers shared by the on-disk loaders: the in-memory image data set with its normalisation
statistics, per-channel statistics of uint8 images and the conversion to normalised float32."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .arrays import ArrayDataset

# Channel statistics of ImageNet, the usual normalisation for 224-pixel photographs (used by the
# lazy loaders, where computing statistics would mean decoding every training image first).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageArrayDataset(ArrayDataset):
    """An :class:`ArrayDataset` of images loaded from disk, with how it was normalised.

    Extra attributes
    ----------------
    mean, std : tuple[float, ...]
        Per-channel statistics (pixel values scaled to [0, 1]) that were subtracted / divided:
        ``inputs = (pixels / scale - mean) / std``. Computed on the training split and applied to
        both splits; ``(0, ...)`` / ``(1, ...)`` when normalisation was switched off. One entry
        applies to every channel.
    scale : float
        The raw pixels' full range: 255 for 8-bit images (16 for scikit-learn's digits).
    paths : tuple[str, ...] or None
        The image file of every example (N,), when the images were read from files.
    skipped : dict[str, str]
        Files left out because they could not be decoded (``skip_bad_files=True``), each with the
        decoder's reason, in path order; empty otherwise.
    """

    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    scale: float = 255.0
    paths: tuple[str, ...] | None = None

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def subset(
        self, index: np.ndarray, *, labels: np.ndarray | None = None, name: str | None = None
    ) -> ImageArrayDataset:
        y = self.labels[index] if labels is None else labels
        return ImageArrayDataset(
            self.inputs[index],
            y,
            self.num_classes,
            name or self.name,
            self.class_names,
            mean=self.mean,
            std=self.std,
            scale=self.scale,
            paths=None if self.paths is None else tuple(self.paths[int(i)] for i in np.asarray(index).reshape(-1)),
        )


def channel_stats(images: np.ndarray, *, chunk: int = 2048) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), in [0, 1] units.

    Works through the images in chunks (no float copy of the whole set); sums are accumulated in
    float64 per image and channel, so the result is exact to float32 rounding of one image's sum."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"channel_stats needs uint8 images of shape (N, C, H, W), got {images.dtype} {images.shape}")
    n, c = images.shape[:2]
    total, total_sq = np.zeros(c), np.zeros(c)
    for start in range(0, n, chunk):
        rows = images[start : start + chunk].reshape(-1, images.shape[2] * images.shape[3]).astype(np.float32)
        total += rows.sum(axis=1, dtype=np.float64).reshape(-1, c).sum(axis=0)
        total_sq += np.einsum("ij,ij->i", rows, rows).astype(np.float64).reshape(-1, c).sum(axis=0)
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    return tuple(float(m) / 255.0 for m in mean), tuple(float(v) ** 0.5 / 255.0 for v in var)


def normalise_uint8(
    images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], *, chunk: int = 2048
) -> np.ndarray:
    """``(images / 255 - mean) / std`` per channel as float32 (N, C, H, W), in chunks of images
    (no float64 temporaries)."""
    if len(mean) != images.shape[1] or len(std) != images.shape[1]:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries for {images.shape[1]} channels")
    safe_std = [float(s) if s > 0 else 1.0 for s in std]
    scale = [np.float32(1.0 / (255.0 * s)) for s in safe_std]
    offset = [np.float32(float(m) / s) for m, s in zip(mean, safe_std)]
    out = np.empty(images.shape, dtype=np.float32)
    flat_in = images.reshape(images.shape[0], images.shape[1], -1)
    flat_out = out.reshape(flat_in.shape)
    for start in range(0, len(images), chunk):  # per chunk and channel with scalars: numpy's fastest path
        for c in range(images.shape[1]):
            block = flat_out[start : start + chunk, c]
            np.multiply(flat_in[start : start + chunk, c], scale[c], out=block, casting="unsafe")
            block -= offset[c]
    return out


def make_image_datasets(
    train_u8: np.ndarray,
    train_y: np.ndarray,
    test_u8: np.ndarray,
    test_y: np.ndarray,
    *,
    num_classes: int,
    name: str,
    class_names: tuple[str, ...] | None,
    normalize: bool = True,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    train_skipped: dict[str, str] | None = None,
    test_skipped: dict[str, str] | None = None,
    train_paths: list[str] | None = None,
    test_paths: list[str] | None = None,
) -> tuple[ImageArrayDataset, ImageArrayDataset | None]:
    """Normalise uint8 (N, C, H, W) train/test images with the training set's channel statistics
    (or the given ones) and wrap them as ImageArrayDatasets named ``<name>-train`` / ``<name>-test``.
    ``test_u8=None``: no test split (the second data set is None). ``*_paths``: the files the
    images were decoded from, kept as the data sets' ``paths``."""
    channels = train_u8.shape[1]
    if not normalize:
        mean, std = (0.0,) * channels, (1.0,) * channels
    elif mean is None or std is None:
        m, s = channel_stats(train_u8)
        mean = m if mean is None else tuple(float(v) for v in mean)
        std = s if std is None else tuple(float(v) for v in std)
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    out: list[ImageArrayDataset | None] = []
    for split, x, y, skipped, paths in (
        ("train", train_u8, train_y, train_skipped, train_paths),
        ("test", test_u8, test_y, test_skipped, test_paths),
    ):
        if x is None:
            out.append(None)
            continue
        out.append(
            ImageArrayDataset(
                normalise_uint8(x, mean, std),
                np.asarray(y, dtype=np.int64),
                num_classes,
                f"{name}-{split}",
                class_names,
                mean=mean,
                std=std,
                skipped=dict(skipped or {}),
                paths=None if paths is None else tuple(paths),
            )
        )
    return out[0], out[1]


_WHOLE = re.compile(r"\d+(\.0*)?")


def class_order(names) -> tuple[str, ...]:
    """Class names in label order: numerically when every name is a whole number (folders
    ``0`` .. ``11`` keep ``10`` as class 10, not 2; ``2.0`` counts as 2), else sorted as
    strings. Recorded with every run (data.json), so prediction maps back the same way."""
    names = [str(n) for n in names]
    if names and all(_WHOLE.fullmatch(n) for n in names):
        return tuple(sorted(names, key=lambda n: (int(n.split(".")[0]), n)))
    return tuple(sorted(names))


def require_root(root: str | os.PathLike | None, data: str, what: str) -> Path:
    """The root folder as a Path, or a ValueError saying what the data set needs."""
    if root is None:
        raise ValueError(
            f"data set {data!r} reads files from disk: pass root= (config key data_root, "
            f"command line --data-root) pointing at {what}"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data set {data!r}: root {str(path)!r} is not a folder (expected {what})")
    return path
