"""Repeated examples in data sets built from files, refused before anything is split.

A file listed twice is one example counted twice, and once the list is split it can sit in both
the training and the test set; the same file under two labels is a contradiction. Both are
refused, as is a file in both a given training and a given test set (a train/test leak). One
file is one file whatever its path's spelling: ``a/x.png``, ``a/./x.png``, ``b/../a/x.png`` and a
symlink to it have the same real path (:func:`file_keys`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["file_keys", "refuse_leak", "refuse_repeats"]

SHOWN = 3  # repeated files named in a message


def file_keys(paths: Sequence[str | os.PathLike], *, resolve: bool = True) -> list[str]:
    """One string per path, equal for every path of one file.

    ``resolve=True``: the real path (symlinks followed; one ``lstat`` per file, the folders'
    real paths cached). ``resolve=False``: the normalised absolute path, without touching the
    disk (for lists whose files are not checked)."""
    cwd = os.getcwd()
    folders: dict[str, str] = {}
    out = []
    for p in paths:
        p = os.fspath(p)
        full = p if os.path.isabs(p) else os.path.join(cwd, p)
        if not resolve:
            out.append(os.path.normpath(full))
            continue
        head, tail = os.path.split(full)
        real_head = folders.get(head)
        if real_head is None:
            real_head = folders[head] = os.path.realpath(head)
        key = os.path.join(real_head, tail)
        if tail in ("", ".", "..") or os.path.islink(key):
            key = os.path.realpath(key)
        out.append(key)
    return out


def _groups(keys: Sequence[str]) -> list[list[int]]:
    """Positions of every key that occurs more than once, grouped, in order of first occurrence."""
    where: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        where.setdefault(k, []).append(i)
    return [g for g in where.values() if len(g) > 1]


def _label(labels: np.ndarray, i: int, class_names: Sequence[str] | None) -> str:
    y = int(labels[i])
    return class_names[y] if class_names is not None and 0 <= y < len(class_names) else str(y)


def refuse_repeats(
    keys: Sequence[str],
    labels: np.ndarray,
    *,
    source: str,
    shown: Sequence[str],
    where: Sequence[str],
    class_names: Sequence[str] | None = None,
    fix: str = "list each file once",
) -> None:
    """Raise ValueError when a key occurs more than once.

    Parameters
    ----------
    keys : (N,) from :func:`file_keys`;  labels : (N,) int
    source : the list file or folder, named first in the message
    shown, where : (N,) each entry's path as written and where it is (``"line 4"``, a path)
    fix : what to do, ending the message
    """
    groups = _groups(keys)
    if not groups:
        return
    items = []
    for g in groups[:SHOWN]:
        names = sorted({_label(labels, i, class_names) for i in g})
        detail = f"; labels {' and '.join(names)}" if len(names) > 1 else ""
        items.append(f"{shown[g[0]]!r} ({', '.join(where[i] for i in g)}{detail})")
    more = f", and {len(groups) - SHOWN} more" if len(groups) > SHOWN else ""
    count = f"{len(groups)} file{' is' if len(groups) == 1 else 's are'}"
    conflicting = sum(len({int(labels[i]) for i in g}) > 1 for g in groups)
    extra = f", {conflicting} of them with different labels" if conflicting else ""
    raise ValueError(
        f"{source}: {count} listed more than once{extra} (repeated examples are counted twice and, once split, "
        f"leak from the training into the test set): {', '.join(items)}{more}; {fix}"
    )


def refuse_leak(
    train_keys: Sequence[str],
    test_keys: Sequence[str],
    *,
    train_source: str,
    test_source: str,
    test_shown: Sequence[str],
    test_where: Sequence[str],
    train_where: Sequence[str],
) -> None:
    """Raise ValueError when a file is in both the training and the test set."""
    train_at = {}
    for i, k in enumerate(train_keys):
        train_at.setdefault(k, i)
    both = [j for j, k in enumerate(test_keys) if k in train_at]
    if not both:
        return
    items = [
        f"{test_shown[j]!r} ({test_where[j]}; training: {train_where[train_at[test_keys[j]]]})" for j in both[:SHOWN]
    ]
    more = f", and {len(both) - SHOWN} more" if len(both) > SHOWN else ""
    raise ValueError(
        f"{test_source}: {len(both)} test file{' is' if len(both) == 1 else 's are'} also in the training set "
        f"{train_source} (a train/test leak): {', '.join(items)}{more}; remove them from one of the two"
    )
