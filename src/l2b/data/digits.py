"""scikit-learn's digits (1,797 8x8 grey images, 10 classes): the embedded default data set.

The data ship inside the scikit-learn wheel, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

from ._common import ImageArrayDataset
from .preprocessing import standardise
from .splits import stratified_holdout

DIGITS_SCALE = 16.0  # scikit-learn's digits hold pixel values 0..16


def load_digits(*, test_fraction: float = 0.2, split_seed: int = 0) -> tuple[ImageArrayDataset, ImageArrayDataset]:
    """Return (train, test) as images of shape (1, 8, 8), standardised with the train split's
    pixel mean and standard deviation: ``(pixels / 16 - mean) / std``, recorded as ``.scale``,
    ``.mean`` and ``.std`` (see :func:`l2b.data.preprocessing.preprocessing_of`). The split is
    stratified and fixed by `split_seed`, so runs with different training seeds share one test set."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    raw = bunch.data.reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_holdout(y, fraction=test_fraction, seed=split_seed)
    unit = raw[train_idx].astype(np.float32) / np.float32(DIGITS_SCALE)
    mean, std = (float(unit.mean()),), (float(unit.std()),)
    x = standardise(raw, scale=DIGITS_SCALE, mean=mean, std=std)
    names = tuple(str(n) for n in bunch.target_names)
    stats = dict(mean=mean, std=std, scale=DIGITS_SCALE)
    return (
        ImageArrayDataset(x[train_idx], y[train_idx], 10, "digits-train", names, **stats),
        ImageArrayDataset(x[test_idx], y[test_idx], 10, "digits-test", names, **stats),
    )
