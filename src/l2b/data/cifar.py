"""CIFAR-10 and CIFAR-100 from the official "python version" files.

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}

The files are pickles; they are read with :func:`l2b.data.safe_pickle.load_pickle`, which refuses
any global other than numpy's array reconstruction, so a tampered file cannot run code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._common import ImageArrayDataset, make_image_datasets, require_root
from .safe_pickle import load_pickle

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_TRAIN = tuple(f"data_batch_{k}" for k in range(1, 6))


def _as_dict(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _field(d: dict[str, Any], key: str, path: Path) -> Any:
    if key not in d:
        raise ValueError(f"{path}: missing field {key!r} (fields: {', '.join(sorted(d)) or 'none'})")
    return d[key]


def read_cifar_batch(path: str | os.PathLike, *, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file as uint8 images (n, 3, 32, 32) and int64 labels (n,).

    Raises ValueError naming the file and the field when ``data`` is not (n, 3072) uint8, when
    ``label_key`` is missing, has a length other than n, or holds a value outside [0, num_classes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR batch file {str(path)!r} not found")
    d = _as_dict(load_pickle(path), path)
    data = _field(d, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: field 'data' must be a uint8 array of shape (n, 3072), found {desc}")
    raw = _field(d, label_key, path)
    try:
        labels = np.asarray(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: field {label_key!r} is not a list of integers ({exc})") from None
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise ValueError(
            f"{path}: field {label_key!r} must be a flat list of integers, found {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) != len(data):
        raise ValueError(f"{path}: field {label_key!r} has {len(labels)} labels but 'data' has {len(data)} images")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ValueError(
            f"{path}: field {label_key!r} has label {int(labels[bad[0]])} at index {int(bad[0])}, "
            f"outside [0, {num_classes}) ({bad.size} such labels)"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_names(path: Path, key: str, count: int) -> tuple[str, ...] | None:
    """Class names from a meta file, or None when the file is absent."""
    if not path.is_file():
        return None
    names = _field(_as_dict(load_pickle(path), path), key, path)
    if not isinstance(names, (list, tuple)) or len(names) != count:
        raise ValueError(
            f"{path}: field {key!r} must list {count} class names, "
            f"found {len(names) if isinstance(names, (list, tuple)) else type(names).__name__}"
        )
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _find_dir(root: str | os.PathLike | None, data: str, folder: str, marker: str) -> Path:
    base = require_root(root, data, f"the folder containing {folder}")
    for candidate in (base / folder, base):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(
        f"data set {data!r}: no {folder}/{marker} under {str(base)!r} (root must be the folder "
        f"that contains {folder}, or {folder} itself)"
    )


def load_cifar10_arrays(
    root: str | os.PathLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """Raw CIFAR-10: (train images uint8 (50000, 3, 32, 32), train labels, test images, test labels,
    class names or None)."""
    folder = _find_dir(root, "cifar10", CIFAR10_DIR, "test_batch")
    parts = [read_cifar_batch(folder / name, label_key="labels", num_classes=10) for name in CIFAR10_TRAIN]
    test_x, test_y = read_cifar_batch(folder / "test_batch", label_key="labels", num_classes=10)
    names = _read_names(folder / "batches.meta", "label_names", 10)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), test_x, test_y, names)


def load_cifar100_arrays(
    root: str | os.PathLike, *, label_type: str = "fine"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """Raw CIFAR-100 with ``fine`` (100) or ``coarse`` (20) labels, as :func:`load_cifar10_arrays`."""
    if label_type not in ("fine", "coarse"):
        raise ValueError(f"cifar100 label_type must be 'fine' or 'coarse', got {label_type!r}")
    k = 100 if label_type == "fine" else 20
    folder = _find_dir(root, "cifar100", CIFAR100_DIR, "test")
    train_x, train_y = read_cifar_batch(folder / "train", label_key=f"{label_type}_labels", num_classes=k)
    test_x, test_y = read_cifar_batch(folder / "test", label_key=f"{label_type}_labels", num_classes=k)
    names = _read_names(folder / "meta", f"{label_type}_label_names", k)
    return train_x, train_y, test_x, test_y, names


def load_cifar10(
    *, root: str | os.PathLike | None = None, test_fraction: float = 0.2, split_seed: int = 0, normalize: bool = True
) -> tuple[ImageArrayDataset, ImageArrayDataset]:
    """CIFAR-10 as (train 50,000, test 10,000) images of shape (3, 32, 32), float32.

    ``root`` is the folder containing ``cifar-10-batches-py`` (or that folder itself). Pixels are
    scaled to [0, 1] and normalised per channel with the training set's mean and standard
    deviation (exposed as ``.mean`` / ``.std`` on both data sets; ``normalize=False`` keeps
    [0, 1]). Class names come from ``batches.meta`` (None if it is absent).

    The official test batch is the test split: ``test_fraction`` and ``split_seed`` are accepted
    (the trainer passes them to every loader) and ignored.
    """
    del test_fraction, split_seed  # official split
    train_x, train_y, test_x, test_y, names = load_cifar10_arrays(root)
    return make_image_datasets(
        train_x, train_y, test_x, test_y, num_classes=10, name="cifar10", class_names=names, normalize=normalize
    )


def load_cifar100(
    *,
    root: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    label_type: str = "fine",
    normalize: bool = True,
) -> tuple[ImageArrayDataset, ImageArrayDataset]:
    """CIFAR-100 as (train 50,000, test 10,000) images of shape (3, 32, 32), float32, with the 100
    ``fine`` labels (``label_type="coarse"``: the 20 superclasses).

    ``root`` is the folder containing ``cifar-100-python`` (or that folder itself). Normalised
    as :func:`load_cifar10`; class names from ``meta``. The official test set is the test split:
    ``test_fraction`` and ``split_seed`` are accepted and ignored.
    """
    del test_fraction, split_seed  # official split
    train_x, train_y, test_x, test_y, names = load_cifar100_arrays(root, label_type=label_type)
    k = 100 if label_type == "fine" else 20
    return make_image_datasets(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=k,
        name=f"cifar100-{label_type}" if label_type != "fine" else "cifar100",
        class_names=names,
        normalize=normalize,
    )
