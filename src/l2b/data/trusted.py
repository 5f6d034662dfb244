"""Trusted examples given as files: a folder of checked images or a list of checked paths.

A user with noisy folder labels usually has a few images whose class they checked by hand.
They give them as either

    CHECKED/<class>/<image>          a folder tree in the training data's class layout, or
    checked.csv                      ``path,label`` lines (a header optional; labels as class
                                     names or integer indices; relative paths are taken
                                     relative to the list file's folder)

:func:`read_trusted` reads either into (paths, labels) in the training data's class order;
:func:`match_files` finds which of them are also training files (the same file by path, or a copy
with the same bytes), so that a checked image is taken out of the training data instead of
being trained on twice with two labels; :func:`decode_like` and :func:`append_files` decode
further files exactly as a loaded data set's were.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import ImageArrayDataset, normalise_uint8
from .duplicates import file_keys
from .files import IMAGE_EXTENSIONS, FileListDataset, decode_images
from .transforms import eval_transform

__all__ = ["append_files", "dataset_paths", "decode_like", "files_fingerprint", "match_files", "read_trusted"]


def dataset_paths(ds) -> list[str] | None:
    """The image file of every example of `ds` (N,), or None for data not read from files."""
    if isinstance(ds, FileListDataset):
        return ds.paths
    paths = getattr(ds, "paths", None)
    return None if paths is None else list(paths)


def read_trusted(
    source: str | os.PathLike, class_names: Sequence[str], *, what: str = "trusted set"
) -> tuple[list[str], np.ndarray]:
    """(absolute paths (M,), labels (M,) int64 in the order of `class_names`) of a checked set.

    `source` is a folder of class sub-folders (each named like a training class; a class may be
    missing) or a list file of ``path,label`` lines whose labels are class names or, when every
    label is an integer that is not a class name, class indices.

    Raises ValueError naming the file, the line and the value for an unknown class, a bad index,
    a missing image, or an image listed twice.
    """
    from .imagefolder import scan_image_folder
    from .lists import read_label_list

    path = Path(source).expanduser()
    names = tuple(str(c) for c in class_names)
    if path.is_dir():
        try:
            paths, labels, _ = scan_image_folder(path, classes=names, extensions=IMAGE_EXTENSIONS)
        except ValueError as err:
            raise ValueError(f"{what} {err}") from None
        keys = file_keys(paths)
        if len(set(keys)) != len(keys):
            raise ValueError(f"{what} {path}: an image is reached through two paths (a symlink); keep one")
        return [os.path.abspath(p) for p in paths], labels
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} is neither a folder of class sub-folders nor a list file")
    index = {n: i for i, n in enumerate(names)}
    # Class names first: a folder named "3" is class "3" wherever it sorts; integers that name
    # no class are indices.
    fmt = "name"
    first = _first_label(path)
    if first is not None and first not in index and first.lstrip("+").isdigit():
        fmt = "index"
    frozen = _Frozen(index)
    try:
        parsed, _ = read_label_list(path, label_format=fmt, class_index=frozen, num_classes=len(names))
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None
    return [os.path.abspath(p) for p in parsed.paths], parsed.labels


class _Frozen(dict):
    frozen = True


def _first_label(path: Path) -> str | None:
    from .lists import iter_rows, looks_like_header

    for n, (_, fields) in enumerate(iter_rows(path)):
        if n == 0 and looks_like_header(fields):
            continue
        return fields[1] if len(fields) > 1 else None
    return None


def files_fingerprint(pool: Sequence[str], test: Sequence[str] | None = None) -> str:
    """A short hash of the file lists `pool` and `test` with every file's size: it changes when a
    file is added, removed, renamed or rewritten to another size (a run records it, and a resumed
    run must see the same files)."""
    h = hashlib.sha256()
    for part, paths in (("pool", pool), ("test", test or ())):
        h.update(part.encode())
        for p in paths:
            try:
                size = os.path.getsize(p)
            except OSError:
                size = -1
            h.update(f"\0{p}\0{size}".encode())
    return h.hexdigest()[:32]


def _digest(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def match_files(pool: Sequence[str], new: Sequence[str]) -> np.ndarray:
    """For every file of `new` (M,), its position in `pool` (N,) or -1.

    The same file is found by its real path (symlinks followed) and, failing that, a copy by its
    bytes: only files of equal size are read and hashed, so a checked folder of copies costs a
    few reads, not a pass over the pool."""
    pool_keys = {k: i for i, k in enumerate(file_keys(pool))}
    out = np.array([pool_keys.get(k, -1) for k in file_keys(new)], dtype=np.int64)
    todo = np.flatnonzero(out < 0)
    if not len(todo):
        return out
    sizes: dict[int, list[int]] = {}
    for i, p in enumerate(pool):
        try:
            sizes.setdefault(os.path.getsize(p), []).append(i)
        except OSError:
            continue
    digests: dict[int, str] = {}
    for j in todo:
        candidates = sizes.get(os.path.getsize(new[j]), [])
        if not candidates:
            continue
        want = _digest(new[j])
        for i in candidates:
            if i not in digests:
                digests[i] = _digest(pool[i])
            if digests[i] == want:
                out[j] = i
                break
    return out


def decode_like(ds, paths: Sequence[str], labels: np.ndarray, *, name: str, evaluation: bool = True):
    """The files `paths` (M,) with `labels` (M,) decoded exactly as data set `ds` was: the same
    image size and normalisation in memory, the same transforms streamed (the evaluation
    transform with ``evaluation=True``, else `ds`'s own). Undecodable files are errors naming
    the file."""
    labels = np.asarray(labels, dtype=np.int64)
    if isinstance(ds, FileListDataset):
        transform = ds.transform
        if evaluation:
            transform = eval_transform(ds.image_size, mean=ds.mean, std=ds.std)
        out = FileListDataset(
            list(paths), labels, transform=transform, num_classes=ds.num_classes, class_names=ds.class_names, name=name
        )
        out.mean, out.std, out.image_size = ds.mean, ds.std, ds.image_size
        return out
    if not isinstance(ds, ImageArrayDataset) or ds.paths is None:
        raise ValueError(f"data set {ds.name!r} was not read from image files; files cannot be decoded as it was")
    size = tuple(int(s) for s in ds.inputs.shape[2:])
    pixels, _, _ = decode_images(list(paths), size)
    return ImageArrayDataset(
        normalise_uint8(pixels, ds.mean, ds.std),
        labels,
        ds.num_classes,
        name,
        ds.class_names,
        mean=ds.mean,
        std=ds.std,
        scale=ds.scale,
        paths=tuple(paths),
    )


def append_files(ds, paths: Sequence[str], labels: np.ndarray):
    """`ds` with the files `paths` (M,) appended as examples ``len(ds)..len(ds)+M-1``, decoded
    as `ds`'s own examples are (its statistics unchanged)."""
    if not len(paths):
        return ds
    extra = decode_like(ds, paths, labels, name=ds.name, evaluation=False)
    if isinstance(ds, FileListDataset):
        out = ds.subset(np.arange(len(ds)))
        out._paths = np.array(list(ds._paths) + list(extra._paths), dtype=bytes)  # widest of both
        out.labels = np.concatenate([ds.labels, extra.labels])
        out.skipped = dict(ds.skipped)
        return out
    return ImageArrayDataset(
        np.concatenate([ds.inputs, extra.inputs]),
        np.concatenate([ds.labels, extra.labels]),
        ds.num_classes,
        ds.name,
        ds.class_names,
        mean=ds.mean,
        std=ds.std,
        skipped=dict(ds.skipped),
        scale=ds.scale,
        paths=tuple(ds.paths) + tuple(paths),
    )
