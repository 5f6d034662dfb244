"""Where the clean meta set comes from when no trusted subset is carved out of the training data.

``confident_meta_set`` is the rule of the ``meta_source="confident"`` mode (no clean data at all):
after warm-up, at the start of every epoch, the meta set is rebuilt from training examples the
model is confident about AND whose given label agrees with the model's prediction.
"""

from __future__ import annotations

import numpy as np


def confident_meta_set(probs: np.ndarray, given: np.ndarray, *, num_meta: int, num_classes: int) -> np.ndarray:
    """Indices of a class-balanced pseudo-clean meta set.

    Rule: an example is a candidate when the model's prediction equals its given label; in each
    class c the ``num_meta // K`` candidates (one more for the first ``num_meta % K`` classes) with
    the highest probability of their given label are taken. A class with fewer candidates
    contributes all it has (the set is then smaller, never padded with disagreeing examples).

    Parameters
    ----------
    probs : np.ndarray, shape (N, K)
        Eval-mode class probabilities of the current model on the training set.
    given : np.ndarray, shape (N,) int
        The (possibly noisy) training labels.
    num_meta : int
        Target size of the meta set.

    Returns
    -------
    np.ndarray, sorted int64 indices into the training set.
    """
    if probs.ndim != 2 or probs.shape != (len(given), num_classes):
        raise ValueError(f"probs must have shape (N, K) = ({len(given)}, {num_classes}), got {probs.shape}")
    if num_meta < num_classes:
        raise ValueError(f"num_meta={num_meta} is smaller than the number of classes ({num_classes})")
    agree = probs.argmax(axis=1) == given
    conf = probs[np.arange(len(given)), given]
    quota = np.full(num_classes, num_meta // num_classes)
    quota[: num_meta % num_classes] += 1
    chosen = []
    for c in range(num_classes):
        cand = np.flatnonzero(agree & (given == c))
        # Stable order: highest confidence first, ties by index, so the rule is deterministic.
        order = cand[np.lexsort((cand, -conf[cand]))]
        chosen.append(order[: quota[c]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def read_meta_file(path: str, *, num_examples: int, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A user's list of trusted training examples: lines ``index`` or ``index,label`` (a header
    line naming the columns is allowed). Returns (indices (M,), labels (M,) or None).

    Raises ValueError naming the file, the line and the value for anything malformed, and for a
    list that leaves fewer than two of the `num_examples` examples to train on.
    """
    import csv

    indices, labels = [], []
    with open(path, newline="") as f:  # (line number in the file, cells): errors name the file's own lines
        rows = [(n, r) for n, r in enumerate(csv.reader(f), start=1) if r and any(cell.strip() for cell in r)]
    if rows and not rows[0][1][0].strip().lstrip("-").isdigit():
        header = [c.strip().lower() for c in rows[0][1]]
        if header[0] != "index" or (len(header) > 1 and header[1] != "label"):
            raise ValueError(
                f"{path}: line {rows[0][0]}: header must be 'index' or 'index,label', got {','.join(rows[0][1])}"
            )
        rows = rows[1:]
    widths = {len(r) for _, r in rows}
    if len(widths) > 1:
        raise ValueError(f"{path}: every line must have the same number of columns (found {sorted(widths)})")
    for lineno, row in rows:
        try:
            idx = int(row[0])
            lab = int(row[1]) if len(row) > 1 else None
        except ValueError:
            raise ValueError(f"{path}: line {lineno}: {','.join(row)!r} is not 'index[,label]' with integers") from None
        if not 0 <= idx < num_examples:
            raise ValueError(f"{path}: line {lineno}: index {idx} is outside the training set [0, {num_examples})")
        if lab is not None and not 0 <= lab < num_classes:
            raise ValueError(f"{path}: line {lineno}: label {lab} is outside [0, {num_classes})")
        indices.append(idx)
        labels.append(lab)
    if not indices:
        raise ValueError(f"{path}: no meta examples listed")
    idx_arr = np.asarray(indices, dtype=np.int64)
    if len(np.unique(idx_arr)) != len(idx_arr):
        raise ValueError(f"{path}: an index is listed more than once")
    left = num_examples - len(idx_arr)
    if left < 2:  # the meta examples leave the training set; a batch needs two (BatchNorm)
        listed = f"all {num_examples}" if left == 0 else f"{len(idx_arr)} of the {num_examples}"
        raise ValueError(
            f"{path}: the meta file lists {listed} training examples, leaving {left or 'none'} to train on; "
            "list a small trusted subset (a few per class), at most "
            f"{num_examples - 2} of the {num_examples}"
        )
    has_labels = labels[0] is not None
    return idx_arr, (np.asarray(labels, dtype=np.int64) if has_labels else None)
