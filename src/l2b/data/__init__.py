"""Data sets and splits. Loaders return (train, test) pairs of in-memory ArrayDatasets."""
from __future__ import annotations

from typing import Callable

from .arrays import ArrayDataset
from .digits import load_digits
from .splits import class_balanced_split, stratified_holdout

DATASETS: dict[str, Callable[..., tuple[ArrayDataset, ArrayDataset]]] = {"digits": load_digits}


def load_dataset(name: str, **options) -> tuple[ArrayDataset, ArrayDataset]:
    """Load a registered data set by name as (train, test)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**options)


__all__ = ["ArrayDataset", "DATASETS", "class_balanced_split", "load_dataset", "load_digits",
           "stratified_holdout"]
