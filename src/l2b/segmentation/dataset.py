"""Mask data sets as a run sees them: the ``masks`` data set of ``l2b train`` and its case splits.

``l2b train --data masks --data-root ROOT`` reads ROOT in one of the layouts users have
(:func:`read_mask_source`):

- a folder with ``images/`` and ``masks/`` sub-folders of 2-D files matched by stem (PNG, JPEG,
  TIFF images; index-PNG or 0/255 masks), each image its own case;
- the same two sub-folders holding 3-D volumes (NIfTI ``.nii`` / ``.nii.gz`` or MetaImage
  ``.mhd`` + ``.raw``), sliced to 2-D with the volume as the case;
- a folder of volumes with their masks beside them named ``*_segmentation`` (PROMISE12's own
  layout);
- a CSV list with a header: ``image``, ``mask`` and optionally ``case``.

An optional ``classes.txt`` beside the images (ROOT's, or the CSV's folder) names the classes,
one per line, background first. Splits keep a case whole (:func:`case_split`): no slice of a
test or meta volume is trained on.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import VOLUME_SUFFIXES, SegmentationData, read_mask_csv, read_mask_folder, read_volumes

__all__ = ["LAYOUTS", "MaskDataset", "case_split", "load_masks", "read_mask_source"]

LAYOUTS = (
    "a folder with images/ and masks/ (2-D files matched by stem, or NIfTI / MetaImage volumes), "
    "a folder of volumes with *_segmentation masks beside them (PROMISE12's layout), "
    "or a CSV list with columns image,mask[,case]"
)


@dataclass(frozen=True)
class MaskDataset:
    """Images with one mask each, held in memory.

    Attributes
    ----------
    inputs : np.ndarray, shape (N, C, H, W) float32 in [0, 1]
    labels : np.ndarray, shape (N, H, W) int64 class indices in [0, num_classes)
    num_classes : int
    name : str
    class_names : tuple of str, length num_classes (background first)
    paths : tuple of str, length N: the image file of each example (``vol.nii.gz#12`` for a slice)
    mask_paths : tuple of str, length N
    cases : np.ndarray, shape (N,) of str: the volume (or the image) each example belongs to
    sizes : np.ndarray, shape (N, 2) int: each image's stored (height, width), before resizing
    """

    inputs: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    mask_paths: tuple[str, ...]
    cases: np.ndarray
    sizes: np.ndarray

    #: the task of its labels (:mod:`l2b.tasks`)
    task = "segmentation"

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.inputs.shape[0] != n or len(self.paths) != n or len(self.cases) != n:
            raise ValueError(f"data set {self.name!r}: inputs, masks, paths and cases differ in length")
        if self.labels.ndim != 3 or self.inputs.shape[2:] != self.labels.shape[1:]:
            raise ValueError(
                f"data set {self.name!r}: masks (N, H, W) of the images' size expected, got images "
                f"{self.inputs.shape} and masks {self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    def subset(self, index: np.ndarray, *, labels: np.ndarray | None = None, name: str | None = None) -> MaskDataset:
        """The examples at `index` (N',), optionally with replacement masks (N', H, W)."""
        index = np.asarray(index, np.int64)
        return dataclasses.replace(
            self,
            inputs=self.inputs[index],
            labels=self.labels[index] if labels is None else np.asarray(labels, np.int64),
            name=name or self.name,
            paths=tuple(self.paths[i] for i in index),
            mask_paths=tuple(self.mask_paths[i] for i in index),
            cases=self.cases[index],
            sizes=self.sizes[index],
        )

    def appended(self, other: MaskDataset) -> MaskDataset:
        """This data set followed by `other`'s examples (same image size and channels)."""
        if other.example_shape != self.example_shape:
            raise ValueError(
                f"data set {other.name!r} has images of shape {other.example_shape}, {self.name!r} of "
                f"{self.example_shape}: give image_size so both are resized alike"
            )
        return dataclasses.replace(
            self,
            inputs=np.concatenate([self.inputs, other.inputs]),
            labels=np.concatenate([self.labels, other.labels]),
            paths=self.paths + other.paths,
            mask_paths=self.mask_paths + other.mask_paths,
            cases=np.concatenate([self.cases, other.cases]),
            sizes=np.concatenate([self.sizes, other.sizes]),
        )


def case_split(cases: np.ndarray, count: int, *, seed: int, whole_cases: int | None = None) -> np.ndarray:
    """Positions (sorted) of whole cases, drawn in a seeded random order until they hold at least
    `count` examples (or, with `whole_cases`, exactly that many cases): a case is never split
    between two sets. `cases` (N,) names each example's case; 2-D data, where each image is its
    own case, gets exactly `count`."""
    names, inverse = np.unique(np.asarray(cases), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(names))
    if whole_cases is not None:
        if whole_cases > len(names):
            raise ValueError(f"{whole_cases} cases asked for, and the data hold {len(names)}")
        chosen = order[:whole_cases]
    else:
        sizes = np.bincount(inverse, minlength=len(names))
        reached = np.searchsorted(np.cumsum(sizes[order]), count) if count > 0 else -1
        chosen = order[: reached + 1]
    return np.flatnonzero(np.isin(inverse, chosen)).astype(np.int64)


def read_mask_source(source: str | os.PathLike, *, image_size: int | None = None) -> SegmentationData:
    """Images and masks from `source` in any of :data:`LAYOUTS`."""
    root = Path(source)
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise ValueError(
                f"{root}: a mask list must be a .csv file with columns image,mask[,case]; or give {LAYOUTS}"
            )
        return read_mask_csv(root, image_size=image_size)
    if not root.is_dir():
        raise ValueError(f"{root} does not exist; give {LAYOUTS}")
    images, masks = root / "images", root / "masks"
    if images.is_dir() and masks.is_dir():
        if any(p.name.lower().endswith(VOLUME_SUFFIXES) for p in images.iterdir()):
            return read_volumes(images, masks, image_size=image_size)
        return read_mask_folder(images, masks, image_size=image_size)
    if any(p.name.lower().endswith(VOLUME_SUFFIXES) for p in root.iterdir()):
        return read_volumes(root, root, image_size=image_size)
    found = ", ".join(sorted(p.name for p in root.iterdir())[:6]) or "nothing"
    raise ValueError(f"{root} holds {found}; expected {LAYOUTS}")


def _class_names(source: Path, num_classes: int) -> tuple[str, ...]:
    """classes.txt beside the data (one name per line, background first), else
    ``background, foreground`` for binary masks and ``background, class 1 ...`` otherwise."""
    folder = source.parent if source.is_file() else source
    listing = folder / "classes.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if len(names) < num_classes:
            raise ValueError(
                f"{listing} names {len(names)} classes but the masks hold class indices up to {num_classes - 1}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"{listing}: class names must be unique")
        return tuple(names)
    if num_classes == 2:
        return ("background", "foreground")
    return ("background", *(f"class {k}" for k in range(1, num_classes)))


def as_mask_dataset(data: SegmentationData, name: str, class_names: tuple[str, ...]) -> MaskDataset:
    return MaskDataset(
        inputs=np.ascontiguousarray(data.images, dtype=np.float32),
        labels=np.asarray(data.masks, np.int64),
        num_classes=len(class_names),
        name=name,
        class_names=class_names,
        paths=tuple(str(p) for p in data.paths),
        mask_paths=tuple(str(p) for p in data.mask_paths),
        cases=np.asarray([str(c) for c in data.cases]),
        sizes=np.asarray(data.sizes, np.int64).reshape(-1, 2),
    )


def load_masks(
    root: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    test_fraction: float = 0.0,
    split_seed: int = 0,
    test_cases: int | None = None,
    meta_cases: int | None = None,
) -> tuple[MaskDataset, MaskDataset | None]:
    """(train, test) of the images and masks at `root` (:data:`LAYOUTS`), resized to
    `image_size` when given. ``test_fraction`` of the examples, as whole cases drawn with
    ``split_seed``, form the test set (None when 0), or exactly ``test_cases`` cases when given.
    (``meta_cases`` is the run's meta split, made by :func:`l2b.training.prepare_data`.)"""
    if root is None:
        raise ValueError(f"data 'masks' needs data_root (--data-root): {LAYOUTS}")
    source = Path(root)
    data = read_mask_source(source, image_size=image_size)
    names = _class_names(source, data.num_classes)
    full = as_mask_dataset(data, "masks", names)
    if not test_fraction and test_cases is None:
        return full, None
    try:
        test_idx = case_split(full.cases, round(test_fraction * len(full)), seed=split_seed, whole_cases=test_cases)
    except ValueError as err:
        raise ValueError(f"{source}: test_cases={test_cases}: {err}") from None
    train_idx = np.setdiff1d(np.arange(len(full)), test_idx)
    if not len(train_idx) or not len(test_idx):
        raise ValueError(
            f"{source}: test_fraction={test_fraction} / test_cases={test_cases} of {len(full)} images in "
            f"{len(np.unique(full.cases))} cases leaves an empty training or test set (splits keep a case whole)"
        )
    return full.subset(train_idx, name="masks-train"), full.subset(test_idx, name="masks-test")
