"""Image files on disk -> (train, test): the ImageFolder layout, and the builder shared with the
list-file loaders (in memory at a fixed size, or lazily as FileListDatasets).

    root/<class>/<image>                         one tree, split with test_fraction / split_seed
    root/train/<class>/<image> + root/test/...   the given split

Anything else is refused (:func:`detect_layout`), and so is an image reached twice (a symlink
to an image elsewhere in the tree, or in the other split's tree).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import IMAGENET_MEAN, IMAGENET_STD, class_order, make_image_datasets, require_root
from .duplicates import file_keys, refuse_leak, refuse_repeats
from .files import IMAGE_EXTENSIONS, FileListDataset, decode_images, find_bad_images, list_image_files
from .splits import stratified_holdout
from .transforms import eval_transform, train_transform

IN_MEMORY_SIZE = 32
LAZY_SIZE = 224


def build_image_split(
    train_paths: Sequence[str],
    train_labels: np.ndarray,
    test_paths: Sequence[str] | None,
    test_labels: np.ndarray | None,
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
    """(train, test) from file lists; ``test_paths=None``: no test split (test is None).

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
    train_labels = np.asarray(train_labels, np.int64)
    test_labels = None if test_paths is None else np.asarray(test_labels, np.int64)
    if lazy:
        size = LAZY_SIZE if image_size is None else int(image_size)
        if normalize:
            mean = IMAGENET_MEAN if mean is None else tuple(mean)
            std = IMAGENET_STD if std is None else tuple(std)
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        out: list[FileListDataset | None] = []
        for split, paths, labels, transform in (
            ("train", train_paths, train_labels, train_transform(size, mean=mean, std=std)),
            ("test", test_paths, test_labels, eval_transform(size, mean=mean, std=std)),
        ):
            if paths is None:
                out.append(None)
                continue
            paths = [os.fspath(p) for p in paths]
            skipped: dict[str, str] = {}
            if skip_bad_files:
                skipped = {e.path: e.reason for e in find_bad_images(paths, threads=threads)}
                if skipped:
                    keep = np.array([p not in skipped for p in paths])
                    paths, labels = [p for p, k in zip(paths, keep) if k], labels[keep]
            ds = FileListDataset(
                paths,
                labels,
                transform=transform,
                num_classes=num_classes,
                class_names=class_names,
                name=f"{name}-{split}",
            )
            ds.skipped, ds.mean, ds.std, ds.image_size = skipped, tuple(mean), tuple(std), size
            out.append(ds)
        return out[0], out[1]
    size = IN_MEMORY_SIZE if image_size is None else int(image_size)
    count = len(train_paths) + (0 if test_paths is None else len(test_paths))
    need = count * 3 * size * size * _BYTES_PER_VALUE
    available = _available_memory()
    if available is not None and need > available:
        raise _out_of_memory(name, count, size, need, available)
    try:
        train_x, train_ok, train_bad = decode_images(
            list(train_paths), size, skip_bad_files=skip_bad_files, threads=threads
        )
        test_x, test_ok, test_bad = (None, None, [])
        if test_paths is not None:
            test_x, test_ok, test_bad = decode_images(
                list(test_paths), size, skip_bad_files=skip_bad_files, threads=threads
            )
        if len(train_x) == 0:
            raise ValueError(f"data set {name!r}: no decodable training image ({len(train_bad)} skipped)")
        return make_image_datasets(
            train_x,
            train_labels[train_ok],
            test_x,
            None if test_paths is None else test_labels[test_ok],
            num_classes=num_classes,
            name=name,
            class_names=class_names,
            normalize=normalize,
            mean=None if mean is None else tuple(mean),
            std=None if std is None else tuple(std),
            train_skipped={e.path: e.reason for e in train_bad},
            test_skipped={e.path: e.reason for e in test_bad},
            train_paths=[os.fspath(p) for p, ok in zip(train_paths, train_ok) if ok],
            test_paths=None if test_paths is None else [os.fspath(p) for p, ok in zip(test_paths, test_ok) if ok],
        )
    except MemoryError:
        raise _out_of_memory(name, count, size, need, _available_memory()) from None


# Bytes per pixel value while an in-memory split is built: the decoded uint8 images and their
# float32 normalised copy (l2b.data._common.normalise_uint8) are both held at the peak.
_BYTES_PER_VALUE = 1 + 4


def _available_memory() -> int | None:
    """Bytes that new allocations can take without swapping: MemAvailable of /proc/meminfo
    (Linux), else the free physical pages; None when neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _out_of_memory(name: str, count: int, size: int, need: int, available: int | None) -> ValueError:
    def amount(n: int) -> str:
        return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"

    have = "an unknown amount of memory is" if available is None else f"{amount(available)} is"
    return ValueError(
        f"data set {name!r}: holding its {count} images in memory at image_size {size} needs about {amount(need)} "
        f"({count} x 3 x {size} x {size} pixel values, 1 byte decoded + 4 bytes normalised), but {have} available; "
        "stream them from disk instead with --lazy (config lazy: true), or choose a smaller --image-size"
    )


def _layouts(train_dir: str = "train", test_dir: str = "test") -> str:
    return (
        f"accepted layouts: root/<class>/<images> (one tree, split with test_fraction), or "
        f"root/{train_dir}/<class>/<images> with root/{test_dir}/<class>/<images> (the given split), "
        "and nothing else beside them but hidden or non-image files"
    )


def _entries(folder: Path, extensions: Sequence[str]) -> tuple[list[str], list[str]]:
    """(sub-folder names, image file names) directly in `folder`, sorted, hidden ones left out."""
    exts = {e.lower() for e in extensions}
    dirs, images = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            dirs.append(entry.name)
        elif entry.suffix.lower() in exts:
            images.append(entry.name)
    return dirs, images


def detect_layout(
    root: str | os.PathLike,
    *,
    train_dir: str = "train",
    test_dir: str = "test",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> str:
    """``"split"`` for ``root/train/<class>/...`` + ``root/test/<class>/...``, ``"classes"``
    for ``root/<class>/...``.

    Raises ValueError, listing the accepted layouts, for anything in between: ``train/`` without
    ``test/`` (or the reverse), split folders mixed with other folders, image files loose in
    ``root`` (next to class or split folders), no sub-folder at all.
    """
    root = Path(root)
    dirs, images = _entries(root, extensions)
    splits = [d for d in (train_dir, test_dir) if d in dirs]
    if splits:
        if len(splits) == 1:
            missing = test_dir if splits[0] == train_dir else train_dir
            raise ValueError(
                f"{root}: has a {splits[0]}/ folder but no {missing}/ folder, so {splits[0]!r} is neither a "
                f"split nor safely a class name; add {root / missing}/ or rename {splits[0]}/; "
                f"{_layouts(train_dir, test_dir)}"
            )
        others = [d for d in dirs if d not in splits]
        if others:
            raise ValueError(
                f"{root}: mixes the split folders {train_dir}/ and {test_dir}/ with other folders "
                f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); {_layouts(train_dir, test_dir)}"
            )
    if images:
        raise ValueError(
            f"{root}: {len(images)} image file{'s' if len(images) > 1 else ''} directly in the root "
            f"({', '.join(images[:3])}{', ...' if len(images) > 3 else ''}), which belong to no class; "
            f"move them into a class folder; {_layouts(train_dir, test_dir)}"
        )
    if not dirs:
        raise ValueError(f"{root}: no class sub-folders; {_layouts(train_dir, test_dir)}")
    return "split" if splits else "classes"


def scan_image_folder(
    folder: str | os.PathLike, *, extensions: Sequence[str] = IMAGE_EXTENSIONS, classes: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """(paths, labels, class names) of ``folder/<class>/**/<image>``.

    Classes are the sub-folders (hidden ones left out) in :func:`~l2b.data._common.class_order`
    (numerically when every name is a whole number, else sorted), unless ``classes`` fixes them (a
    test tree is read with the training tree's classes: a folder outside them is an error). Files
    whose extension is not an image extension are ignored; image files directly in ``folder``
    (next to the class folders) and a class folder without images are errors. Symlinked folders
    are followed, each real folder once (:func:`~l2b.data.files.list_image_files`).
    """
    folder = Path(folder)
    found, loose = _entries(folder, extensions)
    if not found:
        raise ValueError(f"{folder}: no class sub-folders (expected {folder}/<class>/<image files>); {_layouts()}")
    if loose:
        raise ValueError(
            f"{folder}: {len(loose)} image file{'s' if len(loose) > 1 else ''} next to the class folders "
            f"({', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''}), which belong to no class; "
            f"move them into a class folder; {_layouts()}"
        )
    if classes is None:
        classes = class_order(found)
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


def _refuse_repeated_images(
    paths: list[str], labels: np.ndarray, classes: Sequence[str], base: Path, tree: Path
) -> list[str]:
    """The files' keys; ValueError if one image is reached through two paths of the tree."""
    keys = file_keys(paths)
    refuse_repeats(
        keys,
        labels,
        source=str(tree),
        shown=keys,
        where=[os.path.relpath(p, base) for p in paths],
        class_names=classes,
        fix="keep one path to each image (a symlink to an image counts as that image)",
    )
    return keys


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
    tree may lack classes but not add any), or ``root/<class>/...`` split stratified by class
    with ``test_fraction`` and ``split_seed`` (``test_fraction=0``: no split, test is None);
    anything else is refused (:func:`detect_layout`).
    Classes are the folder names in :func:`~l2b.data._common.class_order`. An image reached
    through two paths (a symlink), within a tree or in both the train and the test tree, is
    refused.

    Options: ``image_size`` (in memory: side of the square every image is resized to, default 32;
    lazy: crop size, default 224), ``lazy`` (FileListDatasets instead of arrays),
    ``skip_bad_files`` (leave out and count undecodable files instead of raising; see ``.skipped``
    / ``.num_skipped``), ``normalize`` / ``mean`` / ``std``, ``extensions``, ``threads`` (decoding
    threads). See :func:`build_image_split`.
    """
    base = require_root(root, "imagefolder", "a folder of class sub-folders (or train/ and test/ trees of them)")
    train_root, test_root = base / train_dir, base / test_dir
    if detect_layout(base, train_dir=train_dir, test_dir=test_dir, extensions=extensions) == "split":
        train_paths, train_y, classes = scan_image_folder(train_root, extensions=extensions)
        test_paths, test_y, _ = scan_image_folder(test_root, extensions=extensions, classes=classes)
        train_keys = _refuse_repeated_images(train_paths, train_y, classes, base, train_root)
        test_keys = _refuse_repeated_images(test_paths, test_y, classes, base, test_root)
        refuse_leak(
            train_keys,
            test_keys,
            train_source=str(train_root),
            test_source=str(test_root),
            test_shown=test_keys,
            test_where=[os.path.relpath(p, base) for p in test_paths],
            train_where=[os.path.relpath(p, base) for p in train_paths],
        )
    else:
        paths, labels, classes = scan_image_folder(base, extensions=extensions)
        _refuse_repeated_images(paths, labels, classes, base, base)
        if test_fraction == 0:  # no held-out split: every image is trained on (and scored)
            train_paths, train_y, test_paths, test_y = paths, labels, None, None
        else:
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
