"""scikit-learn's digits (1,797 8x8 grey images, 10 classes): the embedded default data set.

The data ship inside the scikit-learn wheel, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

from .arrays import ArrayDataset
from .splits import stratified_holdout


def load_digits(*, test_fraction: float = 0.2, split_seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Return (train, test) as images of shape (1, 8, 8), standardised with the train split's
    pixel mean and standard deviation. The split is stratified and fixed by `split_seed`, so
    runs with different training seeds share one test set."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_holdout(y, fraction=test_fraction, seed=split_seed)
    mean, std = float(x[train_idx].mean()), float(x[train_idx].std())
    x = (x - mean) / std
    names = tuple(str(n) for n in bunch.target_names)
    return (
        ArrayDataset(x[train_idx], y[train_idx], 10, "digits-train", names),
        ArrayDataset(x[test_idx], y[test_idx], 10, "digits-test", names),
    )
