"""Image files on disk -> (train, test): the ImageFolder layout, and the builder shared with the
list-file loaders (in memory at a fixed size, or lazily as FileListDatasets).

    root/<class>/<image>                         one tree, split with test_fraction / split_seed
    root/train/<class>/<image> + root/test/...   the given split
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import IMAGENET_MEAN, IMAGENET_STD, make_image_datasets, require_root
from .files import IMAGE_EXTENSIONS, FileListDataset, decode_images, find_bad_images, list_image_files
from .splits import stratified_holdout
from .transforms import eval_transform, train_transform

IN_MEMORY_SIZE = 32
LAZY_SIZE = 224


def build_image_split(
    train_paths: Sequence[str],
    train_labels: np.ndarray,
    test_paths: Sequence[str],
    test_labels: np.ndarray,
    *,
    num_classes: int,
    class_names: Sequence[str] | None,
    name: str,
    lazy: bool,
    image_size: int | None,
    skip_bad_files: bool,
    normalize: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    threads: int | None = None,
):
    """(train, test) from file lists.

    In memory (``lazy=False``): every file decoded, converted to RGB and resized to
    ``image_size`` x ``image_size`` (default 32), then normalised per channel with the training
    images' statistics (or ``mean`` / ``std``): two :class:`ImageArrayDataset`.

    Lazy (``lazy=True``): two :class:`FileListDataset` with the usual transforms at
    ``image_size`` (default 224): random resized crop + flip for train, resize + centre crop for
    test, normalised with ``mean`` / ``std`` (default: ImageNet's statistics, since computing the
    set's own would mean decoding it all). With ``skip_bad_files`` every file is test-decoded
    first (JPEGs at 1/8 scale) to find the bad ones.

    Bad files raise :class:`~l2b.data.files.BadImageError` naming the file, or with
    ``skip_bad_files`` are left out and listed in each data set's ``skipped``.
    """
    class_names = None if class_names is None else tuple(class_names)
    train_labels, test_labels = np.asarray(train_labels, np.int64), np.asarray(test_labels, np.int64)
    if lazy:
        size = LAZY_SIZE if image_size is None else int(image_size)
        if normalize:
            mean = IMAGENET_MEAN if mean is None else tuple(mean)
            std = IMAGENET_STD if std is None else tuple(std)
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        out = []
        for split, paths, labels, transform in (
            ("train", train_paths, train_labels, train_transform(size, mean=mean, std=std)),
            ("test", test_paths, test_labels, eval_transform(size, mean=mean, std=std)),
        ):
            paths = [os.fspath(p) for p in paths]
            skipped: list[str] = []
            if skip_bad_files:
                bad = {e.path for e in find_bad_images(paths, threads=threads)}
                if bad:
                    keep = np.array([p not in bad for p in paths])
                    skipped = [p for p in paths if p in bad]
                    paths, labels = [p for p, k in zip(paths, keep) if k], labels[keep]
            ds = FileListDataset(
                paths,
                labels,
                transform=transform,
                num_classes=num_classes,
                class_names=class_names,
                name=f"{name}-{split}",
            )
            ds.skipped, ds.mean, ds.std = tuple(skipped), tuple(mean), tuple(std)
            out.append(ds)
        return out[0], out[1]
    size = IN_MEMORY_SIZE if image_size is None else int(image_size)
    train_x, train_ok, train_bad = decode_images(
        list(train_paths), size, skip_bad_files=skip_bad_files, threads=threads
    )
    test_x, test_ok, test_bad = decode_images(list(test_paths), size, skip_bad_files=skip_bad_files, threads=threads)
    if len(train_x) == 0:
        raise ValueError(f"data set {name!r}: no decodable training image ({len(train_bad)} skipped)")
    return make_image_datasets(
        train_x,
        train_labels[train_ok],
        test_x,
        test_labels[test_ok],
        num_classes=num_classes,
        name=name,
        class_names=class_names,
        normalize=normalize,
        mean=None if mean is None else tuple(mean),
        std=None if std is None else tuple(std),
        train_skipped=tuple(e.path for e in train_bad),
        test_skipped=tuple(e.path for e in test_bad),
    )


def scan_image_folder(
    folder: str | os.PathLike, *, extensions: Sequence[str] = IMAGE_EXTENSIONS, classes: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """(paths, labels, class names) of ``folder/<class>/**/<image>``.

    Classes are the sorted sub-folders (hidden ones left out), unless ``classes`` fixes them (a
    test tree is read with the training tree's classes: a folder outside them is an error). Files
    whose extension is not an image extension are ignored; a class folder without images is an error.
    """
    folder = Path(folder)
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise ValueError(f"{folder}: no class sub-folders (expected {folder}/<class>/<image files>)")
    if classes is None:
        classes = found
    else:
        unknown = [c for c in found if c not in classes]
        if unknown:
            raise ValueError(
                f"{folder}: class folder(s) {', '.join(map(repr, unknown))} are not among the training "
                f"classes ({', '.join(classes)})"
            )
    index = {c: i for i, c in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    for c in found:
        files = list_image_files(folder / c, extensions=extensions)
        if not files:
            raise ValueError(f"{folder / c}: class folder has no image files (extensions: {', '.join(extensions)})")
        paths.extend(str(f) for f in files)
        labels.extend([index[c]] * len(files))
    return paths, np.asarray(labels, dtype=np.int64), tuple(classes)


def load_imagefolder(
    *,
    root: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    image_size: int | None = None,
    lazy: bool = False,
    skip_bad_files: bool = False,
    normalize: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    threads: int | None = None,
    train_dir: str = "train",
    test_dir: str = "test",
):
    """Images in class sub-folders as (train, test).

    Layout: ``root/train/<class>/...`` and ``root/test/<class>/...`` (the given split; the test
    tree may lack classes but not add any), else ``root/<class>/...`` split stratified by class
    with ``test_fraction`` and ``split_seed``. Classes are the sorted folder names.

    Options: ``image_size`` (in memory: side of the square every image is resized to, default 32;
    lazy: crop size, default 224), ``lazy`` (FileListDatasets instead of arrays),
    ``skip_bad_files`` (leave out and count undecodable files instead of raising; see ``.skipped``
    / ``.num_skipped``), ``normalize`` / ``mean`` / ``std``, ``extensions``, ``threads`` (decoding
    threads). See :func:`build_image_split`.
    """
    base = require_root(root, "imagefolder", "a folder of class sub-folders (or train/ and test/ trees of them)")
    train_root, test_root = base / train_dir, base / test_dir
    if train_root.is_dir() and test_root.is_dir():
        train_paths, train_y, classes = scan_image_folder(train_root, extensions=extensions)
        test_paths, test_y, _ = scan_image_folder(test_root, extensions=extensions, classes=classes)
    else:
        paths, labels, classes = scan_image_folder(base, extensions=extensions)
        train_idx, test_idx = stratified_holdout(labels, fraction=test_fraction, seed=split_seed)
        if len(test_idx) == 0:
            raise ValueError(f"{base}: test_fraction={test_fraction} of {len(labels)} images leaves no test image")
        train_paths, train_y = [paths[i] for i in train_idx], labels[train_idx]
        test_paths, test_y = [paths[i] for i in test_idx], labels[test_idx]
    return build_image_split(
        train_paths,
        train_y,
        test_paths,
        test_y,
        num_classes=len(classes),
        class_names=classes,
        name="imagefolder",
        lazy=lazy,
        image_size=image_size,
        skip_bad_files=skip_bad_files,
        normalize=normalize,
        mean=mean,
        std=std,
        threads=threads,
    )
