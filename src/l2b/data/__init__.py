"""Data sets and splits. Loaders return (train, test) pairs of in-memory ArrayDatasets."""

from __future__ import annotations

from collections.abc import Callable

from ..names import did_you_mean
from ._common import ImageArrayDataset
from .arrays import ArrayDataset
from .augment import FeatureNoise, augment_batch
from .cifar import load_cifar10, load_cifar100
from .digits import load_digits
from .files import BadImageError, FileListDataset, make_loader
from .idx import load_fashion_mnist, load_mnist, read_idx
from .imagefolder import load_imagefolder
from .lists import load_clothing1m, load_clothing1m_split, load_csv, load_isic2019
from .safe_pickle import RestrictedUnpickler, load_pickle
from .splits import class_balanced_split, stratified_holdout

DATASETS: dict[str, Callable[..., tuple[ArrayDataset, ArrayDataset]]] = {"digits": load_digits}
# On-disk data sets (options: see each loader's docstring). isic2019 and clothing1m return lazy
# FileListDatasets by default (lazy=False: in-memory arrays at image_size).
DATASETS.update(
    {
        "cifar10": load_cifar10,
        "cifar100": load_cifar100,
        "mnist": load_mnist,
        "fashion-mnist": load_fashion_mnist,
        "imagefolder": load_imagefolder,
        "csv": load_csv,
        "isic2019": load_isic2019,
        "clothing1m": load_clothing1m,
    }
)


#: Data sets whose labels are the ones a user gave, unchecked, per split: nobody knows their true
#: labels, so no figure is computed against them unless noise is simulated on top (then the given
#: labels play the truth, as the user asked). Clothing1M's test labels are its checked ones.
UNCHECKED_LABELS: dict[str, tuple[str, ...]] = {
    "imagefolder": ("train", "test"),
    "csv": ("train", "test"),
    "clothing1m": ("train",),
}


def labels_checked(name: str, split: str) -> bool:
    """Whether data set `name`'s own labels of `split` ("train" or "test") are true labels."""
    return split not in UNCHECKED_LABELS.get(name, ())


def load_dataset(name: str, **options) -> tuple[ArrayDataset, ArrayDataset]:
    """Load a registered data set by name as (train, test)."""
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown data set {name!r}; known: {known}{did_you_mean(name, DATASETS)}")
    return DATASETS[name](**options)


__all__ = [
    "ArrayDataset",
    "DATASETS",
    "UNCHECKED_LABELS",
    "labels_checked",
    "class_balanced_split",
    "load_dataset",
    "load_digits",
    "stratified_holdout",
    "BadImageError",
    "FeatureNoise",
    "FileListDataset",
    "ImageArrayDataset",
    "RestrictedUnpickler",
    "augment_batch",
    "load_cifar10",
    "load_cifar100",
    "load_clothing1m",
    "load_clothing1m_split",
    "load_csv",
    "load_fashion_mnist",
    "load_imagefolder",
    "load_isic2019",
    "load_mnist",
    "load_pickle",
    "make_loader",
    "read_idx",
]
