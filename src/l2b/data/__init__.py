"""Data sets and splits. Loaders return (train, test) pairs of in-memory ArrayDatasets."""

from __future__ import annotations

from collections.abc import Callable

from ..options import Option
from ..registry import Registry
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

DATASETS: Registry[Callable[..., tuple[ArrayDataset, ArrayDataset]]] = Registry("data set")
"""The registered data sets (:class:`l2b.registry.Registry`): name -> loader returning (train,
test). The image-file loaders declare the options a config gives them (``image_size``, ``lazy``,
``skip_bad_files``); their other keywords (see each loader's docstring) are for Python callers."""

# The options of the data sets that decode image files (a config's ``data_options``).
_IMAGE_FILE_OPTIONS = (
    Option(
        "image_size",
        "int",
        None,
        "side of the square images the model sees, for image-file data sets (unset: the loader's default, "
        "32 in memory, 224 streamed)",
        minimum=8,
    ),
    Option(
        "lazy",
        "bool",
        None,
        "stream images from disk with DataLoader workers instead of decoding them all into memory "
        "(unset: the data set's default; isic2019 and clothing1m stream)",
    ),
    Option(
        "skip_bad_files",
        "bool",
        False,
        "leave undecodable image files out (counted and listed) instead of stopping at the first one",
    ),
)


def load_masks(**options):
    """Images with a mask each (segmentation), from a folder or list the user gives:
    :func:`l2b.segmentation.dataset.load_masks`."""
    from ..segmentation.dataset import load_masks as load

    return load(**options)


DATASETS.register("digits")(load_digits)
DATASETS.register("cifar10")(load_cifar10)
DATASETS.register("cifar100")(load_cifar100)
DATASETS.register("mnist")(load_mnist)
DATASETS.register("fashion-mnist")(load_fashion_mnist)
DATASETS.register("imagefolder", options=_IMAGE_FILE_OPTIONS)(load_imagefolder)
DATASETS.register("csv", options=_IMAGE_FILE_OPTIONS)(load_csv)
DATASETS.register("isic2019", options=_IMAGE_FILE_OPTIONS)(load_isic2019)
DATASETS.register("clothing1m", options=_IMAGE_FILE_OPTIONS)(load_clothing1m)
# image_size as for the image-file loaders (unset: the files' own size, which must then agree)
_MASK_OPTIONS = (
    _IMAGE_FILE_OPTIONS[0],
    Option(
        "test_cases",
        "int",
        None,
        "masks: hold out exactly this many whole cases (volumes) as the test set, instead of test_fraction",
        minimum=1,
    ),
    Option(
        "meta_cases",
        "int",
        None,
        "masks under simulated noise: exactly this many whole cases, with their clean masks, as the meta set "
        "(instead of num_meta images)",
        minimum=1,
    ),
)
DATASETS.register("masks", options=_MASK_OPTIONS)(load_masks)


#: Data sets whose labels are the ones a user gave, unchecked, per split: nobody knows their true
#: labels, so no figure is computed against them unless noise is simulated on top (then the given
#: labels play the truth, as the user asked). Clothing1M's test labels are its checked ones.
UNCHECKED_LABELS: dict[str, tuple[str, ...]] = {
    "imagefolder": ("train", "test"),
    "csv": ("train", "test"),
    "clothing1m": ("train",),
    "masks": ("train", "test"),
}

#: The task of each data set whose labels are not one class per example (:mod:`l2b.tasks`).
DATA_TASKS: dict[str, str] = {"masks": "segmentation"}


def data_task(name: str) -> str:
    """The task of data set `name`'s labels: ``classification`` unless :data:`DATA_TASKS` says."""
    return DATA_TASKS.get(name, "classification")


def labels_checked(name: str, split: str) -> bool:
    """Whether data set `name`'s own labels of `split` ("train" or "test") are true labels."""
    return split not in UNCHECKED_LABELS.get(name, ())


def load_dataset(name: str, **options) -> tuple[ArrayDataset, ArrayDataset]:
    """Load a registered data set by name as (train, test)."""
    return DATASETS.get(name)(**options)


__all__ = [
    "ArrayDataset",
    "DATASETS",
    "UNCHECKED_LABELS",
    "data_task",
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
