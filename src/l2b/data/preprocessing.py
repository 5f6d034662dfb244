"""How a data set's raw inputs become model inputs, so that a trained model can be fed new raw
inputs exactly as its training data were fed.

Every loader here standardises per channel: ``x = (raw / scale - mean[c]) / std[c]``, where
``raw`` is what the files hold (8-bit pixel values 0..255, scale 255; scikit-learn's digits
0..16, scale 16) and ``mean`` / ``std`` were computed on the training split (or are ImageNet's,
for streamed images). :func:`preprocessing_of` reads that description off a loaded data set;
:meth:`Preprocessing.apply` repeats it on new raw inputs (N, C, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Preprocessing", "preprocessing_of", "standardise"]


def standardise(raw: np.ndarray, *, scale: float, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(raw / scale - mean[c]) / std[c]`` per channel as float32 (N, C, ...).

    uint8 input with ``scale == 255`` goes through the same chunked routine the image loaders
    use (:func:`l2b.data._common.normalise_uint8`), so its result is bit-identical to theirs; a
    single ``mean`` / ``std`` entry applies to every channel."""
    from ._common import normalise_uint8

    raw = np.asarray(raw)
    channels = raw.shape[1] if raw.ndim >= 2 else 1
    mean = tuple(float(m) for m in mean) * (channels if len(mean) == 1 else 1)
    std = tuple(float(s) for s in std) * (channels if len(std) == 1 else 1)
    if float(scale) == 255.0 and raw.ndim >= 3 and raw.dtype != np.uint8 and raw.dtype.kind in "iuf" and raw.size:
        if raw.min() >= 0 and raw.max() <= 255 and (raw.dtype.kind != "f" or np.array_equal(raw, np.round(raw))):
            raw = raw.astype(np.uint8)  # whole 8-bit values: the loaders' exact path below
    if raw.dtype == np.uint8 and float(scale) == 255.0 and raw.ndim >= 3:
        return normalise_uint8(raw, mean, std)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries for {channels} channels")
    x = raw.astype(np.float32) / np.float32(scale)
    if len(set(mean)) == 1 and len(set(std)) == 1:  # one statistic for all channels (digits)
        return ((x - mean[0]) / (std[0] if std[0] > 0 else 1.0)).astype(np.float32, copy=False)
    shape = (1, channels) + (1,) * (raw.ndim - 2)
    m = np.asarray(mean, dtype=np.float32).reshape(shape)
    s = np.asarray([v if v > 0 else 1.0 for v in std], dtype=np.float32).reshape(shape)
    return ((x - m) / s).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Preprocessing:
    """raw inputs -> model inputs: ``(raw / scale - mean[c]) / std[c]`` per channel.

    Attributes
    ----------
    scale : float
        The raw inputs' full range (255 for 8-bit pixels, 16 for scikit-learn's digits); raw
        values must lie in [0, scale].
    mean, std : tuple[float, ...]
        Per channel (one entry: every channel), in units of ``raw / scale``.
    raw : str
        What the raw inputs are, for messages.
    """

    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    raw: str = "8-bit pixel values"

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Model inputs (float32, same shape) from raw inputs (N, C, ...)."""
        return standardise(raw, scale=self.scale, mean=self.mean, std=self.std)

    def rebase(self, x: np.ndarray, source: Preprocessing) -> np.ndarray:
        """Inputs preprocessed by `source` re-expressed as this preprocessing would have made
        them (undo `source`'s standardisation, apply this one): float32 (N, C, ...)."""
        if source == self:
            return x
        channels = x.shape[1]

        def per_channel(values: tuple[float, ...]) -> np.ndarray:
            v = values * (channels if len(values) == 1 else 1)
            return np.asarray(v, dtype=np.float64).reshape((1, channels) + (1,) * (x.ndim - 2))

        unit = x * per_channel(source.std) + per_channel(source.mean)  # raw / scale
        return ((unit - per_channel(self.mean)) / per_channel(self.std)).astype(np.float32)

    def check_raw(self, raw: np.ndarray, source: str) -> None:
        """Refuse raw inputs outside [0, scale], or floats that look already scaled to [0, 1]
        (ValueError naming `source`, the range found and what to do)."""
        if raw.size == 0:
            return
        lo, hi = float(raw.min()), float(raw.max())
        hint = (
            f"if it holds inputs already preprocessed as the run's data were ({self.describe()}), "
            "pass --preprocessed (preprocessed=True)"
        )
        if lo < 0 or hi > self.scale:
            raise ValueError(
                f"{source}: inputs range from {lo:.4g} to {hi:.4g}, outside [0, {self.scale:g}], the range of "
                f"raw inputs ({self.raw}); {hint}"
            )
        if raw.dtype.kind == "f" and 0 < hi <= 1 < self.scale:
            raise ValueError(
                f"{source}: inputs range from {lo:.4g} to {hi:.4g}: they look scaled to [0, 1], but raw inputs "
                f"are {self.raw} in [0, {self.scale:g}]; give the raw values, or {hint}"
            )

    def describe(self) -> str:
        def fmt(values: tuple[float, ...]) -> str:
            shown = ", ".join(f"{v:.4g}" for v in values)
            return shown if len(values) == 1 else f"({shown})"

        return f"(x / {self.scale:g} - {fmt(self.mean)}) / {fmt(self.std)}"

    def to_dict(self) -> dict:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std), "raw": self.raw}


def preprocessing_of(dataset) -> Preprocessing | None:
    """The preprocessing a loaded data set's inputs went through, or None when it is unknown
    (an :class:`~l2b.data.ArrayDataset` built from someone's own arrays).

    Reads the ``mean`` / ``std`` (and ``scale``, default 255) that
    :class:`~l2b.data.ImageArrayDataset` and the loaders' :class:`~l2b.data.FileListDataset`
    carry."""
    mean, std = getattr(dataset, "mean", None), getattr(dataset, "std", None)
    if not mean or not std:
        return None
    scale = float(getattr(dataset, "scale", 255.0))
    raw = "8-bit pixel values 0..255" if scale == 255.0 else f"pixel values 0..{scale:g}"
    return Preprocessing(scale, tuple(float(m) for m in mean), tuple(float(s) for s in std), raw)
