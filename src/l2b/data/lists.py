"""Image sets described by list files: generic ``path,label`` lists, ISIC2019's one-hot ground
truth CSV and Clothing1M's key/label files.

Every problem in a list file is a ValueError naming the file, the line and the offending value.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._common import class_order, require_root
from .duplicates import file_keys, refuse_leak, refuse_repeats
from .files import FileListDataset
from .imagefolder import build_image_split
from .splits import stratified_holdout

PATH_COLUMNS = ("path", "image", "file", "filename", "filepath", "file_path", "image_path", "img", "image_id", "key")
LABEL_COLUMNS = ("label", "labels", "class", "class_id", "class_name", "target", "category", "y")
_INT = re.compile(r"[+-]?\d+(\.0*)?")  # "3", "+3" and "3.0" (a spreadsheet's export of 3)
_MAX_LABEL = np.iinfo(np.int64).max


def _class_index(value: str) -> int | None:
    """`value` as a class index: a non-negative whole number that the int64 label array holds,
    written ``3`` or ``3.0``, else None (int() alone would overflow that array, or refuse
    thousands of digits unnamed)."""
    if not _INT.fullmatch(value):
        return None
    digits = value.split(".")[0]
    if len(digits.lstrip("+-").lstrip("0")) > 19:
        return None
    label = int(digits)
    return label if 0 <= label <= _MAX_LABEL else None


# ----------------------------------------------------------------------------------------------
# Reading list files
# ----------------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"list file {str(path)!r} not found")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None


def iter_rows(path: str | os.PathLike, *, delimiter: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped fields) of every non-blank line not starting with ``#``.

    The delimiter is, unless given, ``,`` if the first such line has a comma, else a tab if it has
    one, else any whitespace (then paths cannot contain spaces). Comma / tab lines follow CSV
    quoting rules."""
    path = Path(path)
    lines = _read_lines(path)
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if delimiter is None:
            delimiter = "," if "," in line else ("\t" if "\t" in line else " ")
        if delimiter == " ":
            fields = line.split()
        else:
            try:
                fields = [f.strip() for f in next(csv.reader([line], delimiter=delimiter, strict=True))]
            except csv.Error as exc:
                raise ValueError(f"{path} line {number}: malformed CSV ({exc}): {line!r}") from None
        yield number, fields


@dataclass
class LabelList:
    """One list file, parsed: full paths, int64 labels, the line each came from, the paths as
    written and one key per file (:func:`~l2b.data.duplicates.file_keys`)."""

    source: Path
    paths: list[str]
    labels: np.ndarray
    lines: list[int]
    written: list[str]
    keys: list[str]

    def refuse_repeats(self, class_names: Sequence[str] | None = None) -> None:
        """ValueError naming the file, the repeated paths and their lines, if a file is listed twice."""
        refuse_repeats(
            self.keys,
            self.labels,
            source=str(self.source),
            shown=self.written,
            where=[f"line {n}" for n in self.lines],
            class_names=class_names,
        )

    def refuse_leak(self, train: LabelList) -> None:
        """ValueError if a file of this (test) list is also in the `train` list."""
        refuse_leak(
            train.keys,
            self.keys,
            train_source=str(train.source),
            test_source=str(self.source),
            test_shown=self.written,
            test_where=[f"line {n}" for n in self.lines],
            train_where=[f"line {n}" for n in train.lines],
        )


def _column(
    header: list[str] | None, wanted: str | int | None, defaults: Sequence[str], fallback: int, source: Path, what: str
) -> int:
    if isinstance(wanted, int):
        return wanted
    if header is None:
        if wanted is not None:
            raise ValueError(f"{source}: {what} column {wanted!r} is named but the file has no header line")
        return fallback
    lowered = [h.lower() for h in header]
    if wanted is not None:
        if wanted.lower() not in lowered:
            raise ValueError(f"{source} line 1: header has no column {wanted!r} (columns: {', '.join(header)})")
        return lowered.index(wanted.lower())
    for name in defaults:
        if name in lowered:
            return lowered.index(name)
    return fallback


def looks_like_header(fields: list[str]) -> bool:
    """A header names a path column anywhere (``index,path,label`` as `l2b relabel` writes it),
    or a label column second."""
    return any(f.lower() in PATH_COLUMNS for f in fields) or (len(fields) >= 2 and fields[1].lower() in LABEL_COLUMNS)


def read_label_list(
    path: str | os.PathLike,
    *,
    base: str | os.PathLike | None = None,
    label_format: str = "auto",
    class_index: dict[str, int] | None = None,
    num_classes: int | None = None,
    header: bool | None = None,
    path_column: str | int | None = None,
    label_column: str | int | None = None,
    check_files: bool = True,
) -> tuple[LabelList, str]:
    """Parse a ``path,label`` list (CSV, tab or whitespace separated; header optional).

    Parameters
    ----------
    base : folder relative paths are resolved against (default: the list file's folder)
    label_format : ``"index"`` (integer class indices), ``"name"`` (class names) or ``"auto"``
        (index if the first label is an integer, else name)
    class_index : name -> index for ``"name"`` labels; names not in it are an error unless it is
        empty, in which case it is filled with the names found (in order of appearance)
    num_classes : upper bound for ``"index"`` labels (None: any non-negative integer)
    header : whether the first line is a header; None guesses from its words (path / image /
        file ... in the first column, label / class / target ... in the second)
    path_column, label_column : column names (with a header) or 0-based positions (default: the
        first column named like a path / label, else columns 0 and 1)
    check_files : whether every path must exist (and symlinks are resolved when looking for
        repeated files; without it paths are only normalised)

    A file listed more than once (as ``a/x.png``, ``a/./x.png`` or through a symlink), with the
    same label or not, is a ValueError naming the file, the paths, their lines and the count.

    Returns the parsed list and the label format used.
    """
    source = Path(path)
    base = source.parent if base is None else Path(base)
    if label_format not in ("auto", "index", "name"):
        raise ValueError(f"label_format must be 'auto', 'index' or 'name', got {label_format!r}")
    rows = list(iter_rows(source))
    if not rows:
        raise ValueError(f"{source}: no entries")
    head: list[str] | None = None
    if header is True or (header is None and looks_like_header(rows[0][1])):
        head, rows = rows[0][1], rows[1:]
    pc = _column(head, path_column, PATH_COLUMNS, 0, source, "path")
    lc = _column(head, label_column, LABEL_COLUMNS, 1, source, "label")
    if not rows:
        raise ValueError(f"{source}: header but no entries")
    need = max(pc, lc) + 1
    paths: list[str] = []
    written: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    for number, fields in rows:
        if len(fields) < need:
            raise ValueError(
                f"{source} line {number}: expected at least {need} columns (path in column {pc}, "
                f"label in column {lc}), found {len(fields)}: {','.join(fields)!r}"
            )
    if label_format == "auto":
        label_format = _label_format(source, rows, lc, class_index)
    for number, fields in rows:
        rel, value = fields[pc], fields[lc]
        if label_format == "index":
            label = _class_index(value)
            if label is None or (num_classes is not None and label >= num_classes):
                bound = f"[0, {num_classes})" if num_classes is not None else "a non-negative integer"
                raise ValueError(f"{source} line {number}: bad label {value!r} (expected a class index in {bound})")
        else:
            if class_index is None:
                class_index = {}
            if value not in class_index:
                if getattr(class_index, "frozen", False):
                    raise ValueError(
                        f"{source} line {number}: unknown class {value!r} (known: {', '.join(class_index)})"
                    )
                if not value:
                    raise ValueError(f"{source} line {number}: empty label")
                class_index[value] = len(class_index)
            label = class_index[value]
        if not rel:
            raise ValueError(f"{source} line {number}: empty path")
        full = rel if os.path.isabs(rel) else os.path.join(base, rel)
        if check_files and not os.path.isfile(full):
            raise ValueError(f"{source} line {number}: unknown path {rel!r} (no file {full})")
        paths.append(full)
        written.append(rel)
        labels.append(label)
        lines.append(number)
    parsed = LabelList(
        source, paths, np.asarray(labels, dtype=np.int64), lines, written, file_keys(paths, resolve=check_files)
    )
    parsed.refuse_repeats(None if class_index is None or label_format != "name" else list(class_index))
    return parsed, label_format


def _label_format(source: Path, rows: list[tuple[int, list[str]]], lc: int, known: dict[str, int] | None) -> str:
    """``"index"`` when every label of the column is a whole number, ``"name"`` when none is (or
    when they are all names of `known` classes); a column that mixes the two is refused, naming a
    line of each, since reading it either way would make up classes."""
    numbers = [(n, f[lc]) for n, f in rows if _INT.fullmatch(f[lc])]
    if known and all(f[lc] in known for _, f in rows):
        return "name"
    if len(numbers) == len(rows):
        return "index"
    if not numbers:
        return "name"
    name = next((n, f[lc]) for n, f in rows if not _INT.fullmatch(f[lc]))
    raise ValueError(
        f"{source}: the label column mixes class names and numbers (line {name[0]}: {name[1]!r}, line "
        f"{numbers[0][0]}: {numbers[0][1]!r}); write every label as a class name, or every label as a class index"
    )


#: The most classes an index-labelled list may imply without ``num_classes`` being given.
MAX_INFERRED_CLASSES = 100_000


class _FrozenIndex(dict):
    """A class-name index that refuses new names (the test list must use the training classes)."""

    frozen = True


def _resolve(path: str | os.PathLike, root: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or root is None else root / p


def _find_list(root: Path, stem: str) -> Path | None:
    for suffix in (".csv", ".txt", ".tsv"):
        if (root / (stem + suffix)).is_file():
            return root / (stem + suffix)
    return None


def load_csv(
    *,
    root: str | os.PathLike | None = None,
    train_list: str | os.PathLike | None = None,
    test_list: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    label_format: str = "auto",
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    header: bool | None = None,
    path_column: str | int | None = None,
    label_column: str | int | None = None,
    check_files: bool = True,
    lazy: bool = False,
    image_size: int | None = None,
    skip_bad_files: bool = False,
    normalize: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    threads: int | None = None,
):
    """Images listed in ``path,label`` files as (train, test).

    ``train_list`` / ``test_list``: the list files (relative ones are taken relative to ``root``
    when it is given); without ``train_list``, ``root/train.{csv,txt,tsv}`` and
    ``root/test.{csv,txt,tsv}``, or ``root`` itself when it is a list file (``--data-root
    relabelled.csv``). Without a test list the training list is split stratified by
    class with ``test_fraction`` and ``split_seed`` (0: no split, test is None). Image paths in a list are relative to
    ``root`` when given, else to the list file's folder. A file listed twice in one list, or in
    both lists (a train/test leak), is refused (ValueError naming the file, paths and lines).

    Labels are integer class indices 0..K-1 (``num_classes`` defaults to the largest + 1, or the
    number of ``class_names``; ``3.0`` reads as 3), or class names (indexed by ``class_names``
    when given, else in :func:`~l2b.data._common.class_order`: numerically when every name is a
    whole number, else sorted). Whole numbers that are not 0..K-1 (1-based, or sparse such as
    3, 7, 11) are class names, so they come back as written; a column mixing names and numbers
    is refused. See :func:`read_label_list` for ``label_format``,
    ``header``, ``path_column``, ``label_column`` and ``check_files``. Images are loaded as in
    :func:`~l2b.data.imagefolder.build_image_split` (``lazy``, ``image_size``, ``skip_bad_files``,
    ``normalize``, ``mean``, ``std``, ``threads``).
    """
    base = None if root is None else Path(root).expanduser()
    if base is not None and base.is_file() and train_list is None:  # the list itself (e.g. relabel's output)
        train_list, base = base, None
    if base is not None and not base.is_dir():
        raise FileNotFoundError(
            f"data set 'csv': root {str(base)!r} is neither a folder (holding train.csv) nor a path,label list file"
        )
    if train_list is None:
        if base is None:
            raise ValueError("data set 'csv' needs train_list= (a path,label file) or root= holding train.csv/.txt")
        train_path = _find_list(base, "train")
        if train_path is None:
            raise FileNotFoundError(
                f"data set 'csv': no train.csv, train.txt or train.tsv in {str(base)!r} (or pass train_list=)"
            )
        test_path = _find_list(base, "test") if test_list is None else _resolve(test_list, base)
    else:
        train_path = _resolve(train_list, base)
        test_path = None if test_list is None else _resolve(test_list, base)
    names = None if class_names is None else tuple(str(c) for c in class_names)
    if names is not None and num_classes is None:
        num_classes = len(names)
    index = _FrozenIndex({n: i for i, n in enumerate(names)}) if names is not None else {}
    options = dict(
        base=base,
        num_classes=num_classes,
        header=header,
        path_column=path_column,
        label_column=label_column,
        check_files=check_files,
    )
    train, fmt = read_label_list(train_path, label_format=label_format, class_index=index, **options)
    if fmt == "index" and names is None and num_classes is None and int(train.labels.max()) >= MAX_INFERRED_CLASSES:
        line = train.lines[int(train.labels.argmax())]  # one stray label would make millions of empty classes
        raise ValueError(
            f"{train.source} line {line}: label {int(train.labels.max())} would make {int(train.labels.max()) + 1} "
            "classes; labels are class indices from 0: give num_classes (or class names) if that many is meant"
        )
    if fmt == "index" and names is None and num_classes is None and label_format == "auto":
        found = np.unique(train.labels)
        if not np.array_equal(found, np.arange(len(found))):  # 1-based or sparse: the numbers name classes
            fmt, index = "name", {str(k): i for i, k in enumerate(found.tolist())}
            train.labels = np.searchsorted(found, train.labels).astype(np.int64)
            names = tuple(index)
            index = _FrozenIndex(index)
    if fmt == "name":
        if names is None:  # classes found in the list: index them in label order (class_order)
            names = class_order(index)
            remap = np.array([names.index(n) for n in index], dtype=np.int64)
            train.labels = remap[train.labels]
            index = {n: i for i, n in enumerate(names)}
        num_classes = len(names)
        index = _FrozenIndex(index)
    elif num_classes is None:
        num_classes = int(train.labels.max()) + 1
        if num_classes > MAX_INFERRED_CLASSES:  # one stray label would make millions of empty classes
            line = train.lines[int(train.labels.argmax())]
            raise ValueError(
                f"{train.source} line {line}: label {num_classes - 1} would make {num_classes} classes; "
                f"labels are class indices from 0: give num_classes (or class names) if that many is meant"
            )
    options["num_classes"] = num_classes
    if test_path is not None:
        test, _ = read_label_list(test_path, label_format=fmt, class_index=index, **options)
        test.refuse_leak(train)
        train_paths, train_y, test_paths, test_y = train.paths, train.labels, test.paths, test.labels
    elif test_fraction == 0:  # no held-out split: every listed image is trained on
        train_paths, train_y, test_paths, test_y = train.paths, train.labels, None, None
    else:
        train_idx, test_idx = stratified_holdout(train.labels, fraction=test_fraction, seed=split_seed)
        for left, what in ((test_idx, "test"), (train_idx, "training")):
            if len(left) == 0:
                raise ValueError(
                    f"{train_path}: test_fraction={test_fraction} of {len(train.labels)} entries leaves no {what} entry"
                )
        train_paths, train_y = [train.paths[i] for i in train_idx], train.labels[train_idx]
        test_paths, test_y = [train.paths[i] for i in test_idx], train.labels[test_idx]
    if names is None:
        names = tuple(str(i) for i in range(num_classes))
    return build_image_split(
        train_paths,
        train_y,
        test_paths,
        test_y,
        num_classes=num_classes,
        class_names=names,
        name="csv",
        lazy=lazy,
        image_size=image_size,
        skip_bad_files=skip_bad_files,
        normalize=normalize,
        mean=mean,
        std=std,
        threads=threads,
    )


# ----------------------------------------------------------------------------------------------
# ISIC 2019
# ----------------------------------------------------------------------------------------------

ISIC2019_GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
ISIC2019_IMAGE_DIRS = ("ISIC_2019_Training_Input/ISIC_2019_Training_Input", "ISIC_2019_Training_Input", "images", ".")


def read_isic_ground_truth(path: str | os.PathLike) -> tuple[list[str], np.ndarray, tuple[str, ...], list[int]]:
    """ISIC-style one-hot ground truth: header ``image,<class>,<class>,...``, one row per image
    with 0/1 values and exactly one 1. Returns (image ids, labels = column of the 1, class
    names, line numbers). Missing ``image`` column, short rows, non-numeric values, duplicate ids
    and rows that are not one-hot are errors naming the file, line and value."""
    source = Path(path)
    rows = list(iter_rows(source, delimiter=","))
    if not rows:
        raise ValueError(f"{source}: empty ground-truth file")
    number, header = rows[0]
    lowered = [h.lower() for h in header]
    if "image" not in lowered:
        raise ValueError(f"{source} line {number}: header has no 'image' column (found: {','.join(header)})")
    image_col = lowered.index("image")
    class_cols = [i for i in range(len(header)) if i != image_col]
    if not class_cols:
        raise ValueError(f"{source} line {number}: header has no class columns after 'image'")
    classes = tuple(header[i] for i in class_cols)
    ids: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for number, fields in rows[1:]:
        if len(fields) != len(header):
            raise ValueError(f"{source} line {number}: {len(fields)} columns, the header has {len(header)}")
        image = fields[image_col]
        if not image:
            raise ValueError(f"{source} line {number}: empty image id")
        if image in seen:
            raise ValueError(f"{source} line {number}: image {image!r} already listed on line {seen[image]}")
        values = []
        for i in class_cols:
            try:
                values.append(float(fields[i]))
            except ValueError:
                raise ValueError(
                    f"{source} line {number} (image {image}): column {header[i]} has non-numeric value {fields[i]!r}"
                ) from None
        v = np.asarray(values)
        if not (np.isin(v, (0.0, 1.0)).all() and v.sum() == 1.0):
            shown = ", ".join(f"{c}={fields[i]}" for c, i in zip(classes, class_cols) if fields[i] not in ("0", "0.0"))
            raise ValueError(f"{source} line {number} (image {image}): row is not one-hot ({shown or 'all zero'})")
        seen[image] = number
        ids.append(image)
        labels.append(int(np.argmax(v)))
        lines.append(number)
    if not ids:
        raise ValueError(f"{source}: header but no rows")
    return ids, np.asarray(labels, dtype=np.int64), classes, lines


def read_id_list(path: str | os.PathLike, known: dict[str, int]) -> np.ndarray:
    """Positions (in the ground truth) of the image ids listed in a split file: one id per line
    (first column of a CSV; ``.jpg`` suffix and a header line ``image`` allowed). Unknown and
    repeated ids are errors naming the file and line."""
    source = Path(path)
    out: list[int] = []
    first: dict[str, int] = {}
    for number, fields in iter_rows(source):
        value = fields[0]
        image = value[:-4] if value.lower().endswith(".jpg") else value
        if not out and not first and image.lower() in ("image", "image_id", "id", "isic_id") and image not in known:
            continue
        if image not in known:
            raise ValueError(f"{source} line {number}: unknown image id {value!r} (not in the ground truth)")
        if image in first:
            raise ValueError(f"{source} line {number}: image id {value!r} already listed on line {first[image]}")
        first[image] = number
        out.append(known[image])
    if not out:
        raise ValueError(f"{source}: no image ids")
    return np.asarray(out, dtype=np.int64)


def load_isic2019(
    *,
    root: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    ground_truth: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    train_split: str | os.PathLike | None = None,
    test_split: str | os.PathLike | None = None,
    drop_unused_classes: bool = True,
    check_files: bool = True,
    lazy: bool = True,
    image_size: int | None = None,
    skip_bad_files: bool = False,
    normalize: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    threads: int | None = None,
):
    """ISIC 2019 skin-lesion images as (train, test); lazy :class:`FileListDataset` by default.

    Files (relative paths are taken relative to ``root``):

    - ``ground_truth``: the one-hot CSV ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK`` (default
      ``root/ISIC_2019_Training_GroundTruth.csv``); label = the column holding the 1.
    - ``images``: the folder of ``<image>.jpg`` (default: the first of
      ``ISIC_2019_Training_Input/ISIC_2019_Training_Input``, ``ISIC_2019_Training_Input``,
      ``images`` and ``root`` itself that holds the first image).
    - ``train_split`` / ``test_split``: text files of image ids, one a line (default
      ``root/train.txt`` / ``root/test.txt`` when present). With only one of them, the other
      split is every remaining image; with neither, the ground truth is split stratified with
      ``test_fraction`` / ``split_seed`` (which are otherwise ignored).

    ``drop_unused_classes`` (default True) removes class columns no image has (UNK in the
    official training ground truth, leaving 8 classes), since a class without examples cannot
    be trained or given meta examples. ``lazy=False`` loads arrays at ``image_size`` (default 32)
    instead; other options as :func:`~l2b.data.imagefolder.build_image_split`.
    """
    base = require_root(root, "isic2019", f"the folder with {ISIC2019_GROUND_TRUTH} and the image folder")
    gt_path = _resolve(ground_truth, base) if ground_truth is not None else base / ISIC2019_GROUND_TRUTH
    if not gt_path.is_file():
        raise FileNotFoundError(
            f"data set 'isic2019': ground-truth CSV {str(gt_path)!r} not found (pass ground_truth=)"
        )
    ids, labels, classes, lines = read_isic_ground_truth(gt_path)
    if images is not None:
        image_dir = _resolve(images, base)
        if not image_dir.is_dir():
            raise FileNotFoundError(f"data set 'isic2019': image folder {str(image_dir)!r} not found")
    else:
        candidates = [base / d for d in ISIC2019_IMAGE_DIRS]
        image_dir = next((d for d in candidates if (d / f"{ids[0]}.jpg").is_file()), None)
        if image_dir is None:
            raise FileNotFoundError(
                f"data set 'isic2019': {ids[0]}.jpg (first image of {gt_path.name}) is in none "
                f"of {', '.join(str(d) for d in candidates)} (pass images=)"
            )
    paths = [os.path.join(image_dir, f"{i}.jpg") for i in ids]
    if check_files:
        for p, number, i in zip(paths, lines, ids):
            if not os.path.isfile(p):
                raise ValueError(f"{gt_path} line {number}: unknown path: image {i!r} has no file {p}")
        # ids are unique (checked above); two ids can still be one file through a symlink
        keys = file_keys(paths)
        refuse_repeats(
            keys,
            labels,
            source=str(gt_path),
            shown=keys,
            where=[f"line {n} (image {i})" for n, i in zip(lines, ids)],
            class_names=classes,
            fix="keep one copy of each image",
        )
    if drop_unused_classes:
        used = np.unique(labels)
        remap = np.full(len(classes), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        labels, classes = remap[labels], tuple(classes[c] for c in used)
    known = {i: k for k, i in enumerate(ids)}
    train_file = (
        _resolve(train_split, base)
        if train_split is not None
        else (base / "train.txt" if (base / "train.txt").is_file() else None)
    )
    test_file = (
        _resolve(test_split, base)
        if test_split is not None
        else (base / "test.txt" if (base / "test.txt").is_file() else None)
    )
    if train_file is None and test_file is None:
        train_idx, test_idx = stratified_holdout(labels, fraction=test_fraction, seed=split_seed)
    else:
        train_idx = read_id_list(train_file, known) if train_file is not None else None
        test_idx = read_id_list(test_file, known) if test_file is not None else None
        if train_idx is None:
            train_idx = np.setdiff1d(np.arange(len(ids)), test_idx)
        if test_idx is None:
            test_idx = np.setdiff1d(np.arange(len(ids)), train_idx)
        overlap = np.intersect1d(train_idx, test_idx)
        if overlap.size:
            raise ValueError(
                f"{test_file}: image {ids[int(overlap[0])]!r} is also in the training split "
                f"{train_file} ({overlap.size} such images)"
            )
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ValueError(f"data set 'isic2019': empty {'training' if len(train_idx) == 0 else 'test'} split")
    return build_image_split(
        [paths[i] for i in train_idx],
        labels[train_idx],
        [paths[i] for i in test_idx],
        labels[test_idx],
        num_classes=len(classes),
        class_names=classes,
        name="isic2019",
        lazy=lazy,
        image_size=image_size,
        skip_bad_files=skip_bad_files,
        normalize=normalize,
        mean=mean,
        std=std,
        threads=threads,
    )


# ----------------------------------------------------------------------------------------------
# Clothing1M
# ----------------------------------------------------------------------------------------------

CLOTHING1M_CLASSES = (
    "T-Shirt",
    "Shirt",
    "Knitwear",
    "Chiffon",
    "Sweater",
    "Hoodie",
    "Windbreaker",
    "Jacket",
    "Down Coat",
    "Suit",
    "Shawl",
    "Dress",
    "Vest",
    "Underwear",
)
CLOTHING1M_SPLITS = {
    "noisy_train": ("noisy_train_key_list.txt", "noisy_label_kv.txt"),
    "clean_train": ("clean_train_key_list.txt", "clean_label_kv.txt"),
    "clean_val": ("clean_val_key_list.txt", "clean_label_kv.txt"),
    "clean_test": ("clean_test_key_list.txt", "clean_label_kv.txt"),
}


def read_key_labels(path: str | os.PathLike, *, num_classes: int = 14) -> dict[str, int]:
    """A Clothing1M ``*_label_kv.txt``: lines ``<image path> <label>``. Short lines, labels that
    are not integers in [0, num_classes) and a path listed twice with different labels are
    errors naming the file, line and value."""
    source = Path(path)
    out: dict[str, int] = {}
    where: dict[str, int] = {}
    for number, fields in iter_rows(source, delimiter=" "):
        if len(fields) != 2:
            raise ValueError(f"{source} line {number}: expected '<image path> <label>', found {' '.join(fields)!r}")
        key, value = fields
        label = _class_index(value)
        if label is None or label >= num_classes:
            raise ValueError(
                f"{source} line {number}: bad label {value!r} for {key} (expected an integer in [0, {num_classes}))"
            )
        if key in out and out[key] != label:
            raise ValueError(
                f"{source} line {number}: {key} has label {label} here but {out[key]} on line {where[key]}"
            )
        out[key], where[key] = label, number
    if not out:
        raise ValueError(f"{source}: no entries")
    return out


def read_key_list(
    path: str | os.PathLike, labels: dict[str, int], labels_source: str | os.PathLike
) -> tuple[list[str], np.ndarray, list[int]]:
    """A Clothing1M ``*_key_list.txt`` (one image path a line) with each key's label looked up
    in ``labels``; a key without a label is an error naming both files and the line."""
    source = Path(path)
    keys: list[str] = []
    ys: list[int] = []
    lines: list[int] = []
    for number, fields in iter_rows(source, delimiter=" "):
        if len(fields) != 1:
            raise ValueError(f"{source} line {number}: expected one image path, found {' '.join(fields)!r}")
        key = fields[0]
        if key not in labels:
            raise ValueError(f"{source} line {number}: unknown path {key!r} (no label in {labels_source})")
        keys.append(key)
        ys.append(labels[key])
        lines.append(number)
    if not keys:
        raise ValueError(f"{source}: no entries")
    return keys, np.asarray(ys, dtype=np.int64), lines


def _clothing_dirs(root: str | os.PathLike | None) -> tuple[Path, Path]:
    base = require_root(root, "clothing1m", "the folder with images/ and the key/label list files")
    for ann in (base, base / "annotations"):
        if (ann / "noisy_label_kv.txt").is_file() or (ann / "clean_label_kv.txt").is_file():
            return base, ann
    raise FileNotFoundError(
        f"data set 'clothing1m': no noisy_label_kv.txt or clean_label_kv.txt in {str(base)!r} "
        f"or {str(base / 'annotations')!r}"
    )


def _clothing_names(ann: Path) -> tuple[str, ...]:
    path = ann / "category_names_eng.txt"
    if path.is_file():
        names = [n.strip() for n in _read_lines(path) if n.strip()]
        if len(names) == len(CLOTHING1M_CLASSES):
            return tuple(names)
    return CLOTHING1M_CLASSES


def _clothing_split(
    base: Path, ann: Path, split: str, cache: dict[str, dict[str, int]], check_files: bool
) -> LabelList:
    """One split's key list with its labels; a key listed twice (or two keys of one file) refused."""
    if split not in CLOTHING1M_SPLITS:
        raise ValueError(f"unknown Clothing1M split {split!r}; known: {', '.join(CLOTHING1M_SPLITS)}")
    list_name, kv_name = CLOTHING1M_SPLITS[split]
    if kv_name not in cache:
        cache[kv_name] = read_key_labels(ann / kv_name, num_classes=len(CLOTHING1M_CLASSES))
    keys, labels, lines = read_key_list(ann / list_name, cache[kv_name], ann / kv_name)
    paths = [os.path.join(base, k) for k in keys]
    if check_files:
        for p, k, number in zip(paths, keys, lines):
            if not os.path.isfile(p):
                raise ValueError(f"{ann / list_name} line {number}: unknown path {k!r} (no file {p})")
    parsed = LabelList(ann / list_name, paths, labels, lines, keys, file_keys(paths, resolve=check_files))
    parsed.refuse_repeats(CLOTHING1M_CLASSES)
    return parsed


def load_clothing1m_split(
    *, root: str | os.PathLike | None = None, split: str = "clean_val", transform=None, check_files: bool = True
) -> FileListDataset:
    """One Clothing1M split as a FileListDataset: ``noisy_train`` (noisy labels), ``clean_train``,
    ``clean_val`` or ``clean_test`` (clean labels), e.g. a clean meta set."""
    base, ann = _clothing_dirs(root)
    listed = _clothing_split(base, ann, split, {}, check_files)
    return FileListDataset(
        listed.paths,
        listed.labels,
        transform=transform,
        num_classes=len(CLOTHING1M_CLASSES),
        class_names=_clothing_names(ann),
        name=f"clothing1m-{split}",
    )


def load_clothing1m(
    *,
    root: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    train_split: str = "noisy_train",
    test_split: str = "clean_test",
    check_files: bool = True,
    lazy: bool = True,
    image_size: int | None = None,
    skip_bad_files: bool = False,
    normalize: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    threads: int | None = None,
):
    """Clothing1M (14 classes) as (train, test); lazy :class:`FileListDataset` by default.

    ``root`` holds ``images/...`` and the annotation files (directly or in ``annotations/``):
    ``noisy_label_kv.txt`` / ``clean_label_kv.txt`` (lines ``images/0/00/xxx.jpg 3``) and the key
    lists ``noisy_train_key_list.txt``, ``clean_train_key_list.txt``, ``clean_val_key_list.txt``,
    ``clean_test_key_list.txt``. ``train_split`` (default ``noisy_train``, with the noisy labels)
    and ``test_split`` (default ``clean_test``) name the key lists used; see
    :func:`load_clothing1m_split` for the clean validation set. The official split is used:
    ``test_fraction`` and ``split_seed`` are accepted and ignored. ``check_files`` checks that
    every listed image exists (about a million ``stat`` calls for the noisy training set). A key
    listed twice in a split is refused. Images of the test split that the training split lists
    too are left out of training, with a warning giving their count: the official lists are
    used as published, without a train/test leak.
    """
    del test_fraction, split_seed  # official split
    base, ann = _clothing_dirs(root)
    cache: dict[str, dict[str, int]] = {}
    train = _clothing_split(base, ann, train_split, cache, check_files)
    test = _clothing_split(base, ann, test_split, cache, check_files)
    in_test = set(test.keys)
    keep = [i for i, k in enumerate(train.keys) if k not in in_test]
    if len(keep) < len(train.keys):
        warnings.warn(
            f"{train.source}: {len(train.keys) - len(keep)} images of the {test_split} split are also listed in "
            f"{train_split}; they are left out of training (they would leak the test set into it)",
            stacklevel=2,
        )
        train = LabelList(
            train.source,
            [train.paths[i] for i in keep],
            train.labels[keep],
            [train.lines[i] for i in keep],
            [train.written[i] for i in keep],
            [train.keys[i] for i in keep],
        )
    return build_image_split(
        train.paths,
        train.labels,
        test.paths,
        test.labels,
        num_classes=len(CLOTHING1M_CLASSES),
        class_names=_clothing_names(ann),
        name="clothing1m",
        lazy=lazy,
        image_size=image_size,
        skip_bad_files=skip_bad_files,
        normalize=normalize,
        mean=mean,
        std=std,
        threads=threads,
    )
