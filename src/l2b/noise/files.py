"""Real (human) noisy labels read from files, e.g. CIFAR-10N and CIFAR-100N.

Supported formats, chosen by the file suffix:

``.pt`` / ``.pth``
    A ``torch.save`` file holding a dict of label arrays (numpy arrays, torch
    tensors or lists of int), or a single such array. This is the format of
    the CIFAR-N releases: ``CIFAR-10_human.pt`` holds int64 arrays
    ``clean_label``, ``aggre_label``, ``worse_label`` and
    ``random_label1``/``2``/``3``; ``CIFAR-100_human.pt`` holds
    ``clean_label`` and ``noisy_label`` (plus coarse labels as lists). These
    files are pickles, so they are read with ``torch.load(weights_only=True)``
    and only the numpy globals needed to rebuild numeric arrays are
    allow-listed; anything else (e.g. a pickle that would call a function)
    is refused with a :class:`ValueError`. Float or boolean arrays load, and
    are then refused as labels ("labels must have an integer dtype, got
    dtype float32"), never rounded. Needs ``torch >= 2.6``.
``.npy``
    A 1-D integer array (``np.load`` with ``allow_pickle=False``).
``.npz``
    Named 1-D integer arrays (``allow_pickle=False``); ``key`` picks one.
``.csv`` / ``.txt``
    Either one label per line, or comma-separated columns with a header
    line naming them, e.g. ``index,label``. A column named ``index`` (or
    ``idx``) gives the position of each row's label, and must hold each of
    ``0 .. N-1`` exactly once; every other column is a label set named by
    its header, picked with ``key``.
``.json``
    A list of ints, or an object mapping names to lists of ints.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .synthetic import NoisyLabels, _as_labels, _resolve_num_classes, _result, empirical_transition

__all__ = [
    "LABEL_FILE_SUFFIXES",
    "load_noisy_labels",
    "noisy_labels_from_file",
]

LABEL_FILE_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".npy", ".npz", ".csv", ".txt", ".json")
"""File suffixes understood by :func:`load_noisy_labels`."""

_INDEX_COLUMNS = ("index", "idx")
_INT_RE = re.compile(r"[+-]?[0-9]+")


# ----------------------------------------------------------------------------
# readers: each returns either one label array or a {name: array} dict
# ----------------------------------------------------------------------------


def _numpy_safe_globals() -> list:
    """The numpy globals a numeric ``ndarray`` pickle references, and nothing more.

    ``ndarray.__reduce__`` points at numpy's ``_reconstruct``; files written
    with numpy 1.x name it ``numpy.core.multiarray._reconstruct`` and files
    written with numpy 2.x ``numpy._core.multiarray._reconstruct``, so the
    same function is registered under both names. The dtype classes are
    needed to restore the state of an unpickled ``numpy.dtype``: the integer
    ones, and the float and bool ones so that such an array loads and is then
    refused as labels by its dtype, instead of as an unsafe file.
    """
    reconstruct = np.zeros(0).__reduce__()[0]
    ints = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
    dtypes = [type(np.dtype(name)) for name in (*ints, "float16", "float32", "float64", "bool")]
    return [
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *dict.fromkeys(dtypes),  # unique, order kept
    ]


def _read_torch(path: Path):
    import torch  # deferred: the rest of l2b.noise is numpy-only

    if not hasattr(torch.serialization, "safe_globals"):  # pragma: no cover - old torch
        raise RuntimeError(
            f"reading {str(path)!r} needs torch >= 2.6 (torch.serialization.safe_globals); "
            f"found torch {torch.__version__}"
        )
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
            # raised for plain (non-torch) pickles, which are refused or read safely anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the restricted unpickler
        raise ValueError(
            f"refused to load {str(path)!r}: it is not a torch file holding only label "
            "arrays (numpy integer arrays, tensors, lists and dicts); nothing in it was "
            f"executed. Reason: {_short_reason(exc)}"
        ) from None
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, Mapping):
        return {str(k): (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in obj.items()}
    return obj


def _short_reason(exc: BaseException) -> str:
    """The informative line of a (long) ``torch.load`` error, without its advice."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if re.search(r"GLOBAL|[Uu]nsupported|Can only|Trying to|magic number|zip", line):
            return f"{type(exc).__name__}: {line.split(' Please use')[0]}"
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _numpy_reason(exc: BaseException) -> str:
    """numpy's reason for refusing a file, without its advice to load pickles unsafely."""
    text = str(exc)
    if "allow_pickle" in text or "pickled" in text:
        return (
            "it holds pickled Python objects, which are never unpickled (labels must be a plain "
            "integer array); nothing in it was executed"
        )
    return text


def _starts_as_pickle(path: Path) -> bool:
    """Whether the file starts as a binary pickle does (protocol 2 to 5)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _read_npy(path: Path):
    with open(path, "rb") as f:
        magic = f.read(6)
    # np.load takes any file without the .npy header for a pickle, and calls it one.
    if magic != b"\x93NUMPY" and not _starts_as_pickle(path):
        raise ValueError(
            f"{str(path)!r} is not a valid .npy file (it does not start with the .npy header); "
            "save the labels with numpy.save"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable .npy array of labels: {_numpy_reason(exc)}") from None


def _read_npz(path: Path):
    import zipfile

    if not zipfile.is_zipfile(path) and not _starts_as_pickle(path):  # else np.load calls it a pickle
        raise ValueError(
            f"{str(path)!r} is not a valid .npz file (not a zip archive, or a truncated one); "
            "save the labels with numpy.savez"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{str(path)!r} is not a readable .npz archive of labels: {_numpy_reason(exc)}") from None


def _read_json(path: Path):
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if isinstance(obj, list):
        return _json_ints(obj, path, None)
    if isinstance(obj, dict):
        return {k: _json_ints(v, path, k) if isinstance(v, list) else v for k, v in obj.items()}
    raise ValueError(
        f"{str(path)!r} must hold a JSON list of labels or an object of label lists, got {type(obj).__name__}"
    )


def _json_ints(values: list, path: Path, key) -> np.ndarray:
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{_where(path, key)}: labels must be integers, got {v!r} at position {i}")
    try:
        return np.asarray(values, dtype=np.int64).reshape(len(values))
    except OverflowError:
        raise ValueError(f"{_where(path, key)}: a label does not fit in int64") from None


def _read_text(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not a UTF-8 text file: {exc}") from None
    rows = [
        (lineno, [field.strip() for field in line.split(",")])
        for lineno, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not rows:
        return np.zeros(0, dtype=np.int64)

    first_line, first = rows[0]
    has_header = not all(_INT_RE.fullmatch(f) for f in first)
    if has_header:
        header, body = first, rows[1:]
        if any(not name for name in header) or len(set(header)) != len(header):
            raise ValueError(
                f"{str(path)!r} line {first_line}: header columns must be non-empty and "
                f"unique, got {','.join(header)!r}"
            )
    else:
        if len(first) != 1:
            raise ValueError(
                f"{str(path)!r} line {first_line}: a file with {len(first)} columns needs a "
                "header line naming them (e.g. 'index,label')"
            )
        header, body = ["label"], rows

    table = np.empty((len(body), len(header)), dtype=np.int64)
    for r, (lineno, fields) in enumerate(body):
        if len(fields) != len(header):
            raise ValueError(
                f"{str(path)!r} line {lineno}: expected {len(header)} comma-separated values, got {len(fields)}"
            )
        for c, field in enumerate(fields):
            if not _INT_RE.fullmatch(field):
                raise ValueError(f"{str(path)!r} line {lineno}: column {header[c]!r} must be an integer, got {field!r}")
            try:
                table[r, c] = int(field)
            except OverflowError:
                raise ValueError(f"{str(path)!r} line {lineno}: value {field!r} does not fit in int64") from None

    index_cols = [c for c, name in enumerate(header) if name.lower() in _INDEX_COLUMNS]
    if len(index_cols) > 1:
        raise ValueError(f"{str(path)!r}: more than one index column in header {header}")
    if index_cols:
        ic = index_cols[0]
        index = table[:, ic]
        n = index.size
        seen = np.zeros(n, dtype=bool)
        for r, i in enumerate(index):
            if not 0 <= i < n or seen[i]:
                what = "duplicate" if 0 <= i < n else f"out-of-range (not in [0, {n}))"
                raise ValueError(
                    f"{str(path)!r} line {body[r][0]}: column {header[ic]!r} must hold each "
                    f"of 0..{n - 1} exactly once, got {what} index {int(i)}"
                )
            seen[i] = True
        order = np.argsort(index, kind="stable")
        table = table[order]
    sets = {name: table[:, c].copy() for c, name in enumerate(header) if c not in index_cols}
    if not sets:
        raise ValueError(f"{str(path)!r}: no label column besides the index in header {header}")
    if not has_header:
        return sets["label"]
    return sets


_READERS = {
    ".pt": _read_torch,
    ".pth": _read_torch,
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".csv": _read_text,
    ".txt": _read_text,
    ".json": _read_json,
}


# ----------------------------------------------------------------------------
# selection and validation
# ----------------------------------------------------------------------------


def _where(path: Path, key) -> str:
    return f"{str(path)!r}" if key is None else f"{str(path)!r} [key={key!r}]"


def _select(obj, path: Path, key):
    if isinstance(obj, Mapping):
        available = sorted(str(k) for k in obj)
        if key is None:
            if len(available) == 1:
                return obj[next(iter(obj))], available[0]
            raise ValueError(f"{str(path)!r} holds several label sets; pass `key` as one of {available}")
        if key not in obj:
            raise ValueError(f"`key`={key!r} not found in {str(path)!r}; available keys: {available}")
        return obj[key], key
    if key is not None:
        raise ValueError(f"`key`={key!r} given, but {str(path)!r} holds a single unnamed label array")
    return obj, None


def _to_labels(value, path: Path, key) -> np.ndarray:
    where = _where(path, key)
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{where}: labels must be integers, got {v!r} at position {i}")
        try:
            value = np.asarray(value, dtype=np.int64).reshape(len(value))
        except OverflowError:
            raise ValueError(f"{where}: a label does not fit in int64") from None
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{where}: expected an array or list of labels, got {type(value).__name__}")
    if value.ndim != 1:
        raise ValueError(f"{where}: labels must be 1-D, got shape {value.shape}")
    if value.dtype.kind not in "iu":
        raise ValueError(
            f"{where}: labels must have an integer dtype, got dtype {value.dtype}{_first_non_integer(value)}"
        )
    if value.dtype.kind == "u" and value.size and int(value.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{where}: label {int(value.max())} does not fit in int64")
    if value.size and int(value.min()) < 0:
        bad = int(np.flatnonzero(value < 0)[0])
        raise ValueError(f"{where}: labels must be non-negative, got label {int(value[bad])} at position {bad}")
    return value.astype(np.int64)  # always a fresh array


def _first_non_integer(value: np.ndarray) -> str:
    """' (label 2.5 at position 3 is not a whole number)' for a float array holding a fraction,
    NaN or infinity; '' otherwise."""
    if value.dtype.kind != "f" or value.size == 0:
        return ""
    flat = value.reshape(-1)
    bad = np.flatnonzero(~np.isfinite(flat) | (flat != np.round(flat)))
    if bad.size == 0:
        return " (whole numbers stored as floats; save the labels as integers)"
    return f" (label {float(flat[bad[0]])!r} at position {int(bad[0])} is not a whole number)"


def _check_count(value, name: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------


def load_noisy_labels(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    num_examples: int | None = None,
    num_classes: int | None = None,
) -> np.ndarray:
    """Read one set of labels from a file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pt``/``.pth``, ``.npy``, ``.npz``, ``.csv``/``.txt`` or ``.json``
        file (see the module docstring for the layouts).
    key : str, optional
        Name of the label set in a file holding several, e.g. ``"worse_label"``,
        ``"aggre_label"``, ``"random_label1"`` .. ``"random_label3"`` or
        ``"clean_label"`` (CIFAR-10N), ``"noisy_label"`` (CIFAR-100N), or a
        column name of a CSV file. Required when the file holds more than one
        set; must be ``None`` for a file holding a single unnamed array.
    num_examples : int, optional
        If given, the number of labels the file must hold.
    num_classes : int, optional
        If given, every label must lie in ``[0, num_classes)``.

    Returns
    -------
    np.ndarray
        Shape ``(N,)``, dtype ``int64``; a fresh array.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For an unsupported suffix, a file that cannot be parsed (or, for
        pickle-based formats, that references anything beyond plain integer
        arrays: such files are refused, never executed), a missing or
        ambiguous ``key`` (the message lists the available keys), labels that
        are not 1-D non-negative integers, a length other than
        ``num_examples`` or a label ``>= num_classes``. Messages name the
        file, the key and the offending value.
    """
    p = Path(os.fspath(path))
    num_examples = _check_count(num_examples, "num_examples")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1
    ):
        raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}")
    suffix = p.suffix.lower()
    if suffix not in _READERS:
        raise ValueError(f"unsupported label file {str(p)!r}: suffix {p.suffix!r} is not one of {LABEL_FILE_SUFFIXES}")
    if not p.is_file():
        raise FileNotFoundError(f"label file {str(p)!r} does not exist")

    value, key = _select(_READERS[suffix](p), p, key)
    labels = _to_labels(value, p, key)
    where = _where(p, key)
    if num_examples is not None and labels.size != num_examples:
        raise ValueError(f"{where}: expected num_examples={num_examples} labels, got {labels.size}")
    if num_classes is not None and labels.size and int(labels.max()) >= num_classes:
        bad = int(np.flatnonzero(labels >= num_classes)[0])
        raise ValueError(
            f"{where}: labels must lie in [0, num_classes={int(num_classes)}), "
            f"got label {int(labels[bad])} at position {bad}"
        )
    return labels


def noisy_labels_from_file(
    clean,
    path: str | os.PathLike,
    *,
    key: str | None = None,
    num_classes: int | None = None,
) -> NoisyLabels:
    """Pair real noisy labels from a file with known clean labels.

    Parameters
    ----------
    clean : array_like of int, shape (N,)
        Clean labels of the same examples, in the same order. Not modified.
    path : str or os.PathLike
        Label file, see :func:`load_noisy_labels`.
    key : str, optional
        Label set to read, see :func:`load_noisy_labels`.
    num_classes : int, optional
        Number of classes ``K``; defaults to ``max(clean.max(), noisy.max()) + 1``.

    Returns
    -------
    NoisyLabels
        Noisy labels ``(N,)``; ``transition`` is the *empirical* transition
        ``(K, K)`` between ``clean`` and the file's labels (see
        :func:`~l2b.noise.synthetic.empirical_transition`); ``noise_rate`` is
        the realised fraction of labels differing from ``clean``; mask ``(N,)``.

    Raises
    ------
    ValueError
        As :func:`load_noisy_labels` (with ``num_examples=len(clean)``), or on
        invalid ``clean`` / ``num_classes``.
    """
    c = _as_labels(clean, name="clean")
    noisy = load_noisy_labels(path, key=key, num_examples=c.size, num_classes=num_classes)
    k = _resolve_num_classes(num_classes, c, noisy, names=("clean", "noisy"))
    return _result(c, noisy, empirical_transition(c, noisy, num_classes=k))
