"""In-memory data sets: arrays of inputs and integer labels, checked on construction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArrayDataset:
    """A labelled data set held in memory.

    Attributes
    ----------
    inputs : np.ndarray, shape (N, *example_shape), float32
    labels : np.ndarray, shape (N,), int64 in [0, num_classes)
    num_classes : int
    name : str
        Shown in error messages and run summaries.
    class_names : tuple[str, ...] or None
    """

    inputs: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str = "arrays"
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x, y = np.asarray(self.inputs), np.asarray(self.labels)
        if len(x) == 0:
            raise ValueError(f"data set {self.name!r} is empty")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"data set {self.name!r}: inputs has {x.shape[0]} examples but labels has {y.shape[0]}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            detail = ""
            if y.ndim == 1 and y.dtype.kind == "f":
                frac = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
                if frac.size:
                    detail = f" (label {float(y[frac[0]])!r} at index {int(frac[0])} is not a whole number)"
            raise ValueError(
                f"data set {self.name!r}: labels must be a 1-D integer array, got shape {y.shape} "
                f"dtype {y.dtype}{detail}"
            )
        bad = np.flatnonzero((y < 0) | (y >= self.num_classes))
        if bad.size:
            raise ValueError(
                f"data set {self.name!r}: label {int(y[bad[0]])} at index {int(bad[0])} is outside "
                f"[0, {self.num_classes}) ({bad.size} such labels)"
            )
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"data set {self.name!r}: inputs must be floating point, got {x.dtype}")
        nonfinite = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        if nonfinite.size:
            raise ValueError(
                f"data set {self.name!r}: input {int(nonfinite[0])} has NaN or Inf values "
                f"({nonfinite.size} such examples)"
            )
        object.__setattr__(self, "inputs", x.astype(np.float32, copy=False))
        object.__setattr__(self, "labels", y.astype(np.int64, copy=False))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    def subset(self, index: np.ndarray, *, labels: np.ndarray | None = None, name: str | None = None) -> ArrayDataset:
        """The examples at `index` (N',), optionally with replacement labels (N',)."""
        y = self.labels[index] if labels is None else labels
        return ArrayDataset(self.inputs[index], y, self.num_classes, name or self.name, self.class_names)
