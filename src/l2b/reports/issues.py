"""Label issues: which training labels a finished run believes are wrong, and what they should be.

Everything here reads the arrays of a run's ``per_example.npz`` (see :mod:`l2b.training.run`); no
model is loaded and nothing is retrained.

The quality rule
----------------
``label_quality[i] = pred_prob[i, given_label[i]]``: the probability that the checkpoint selected
on the clean meta set gives to the label the example was trained on. ``predicted_label[i] =
argmax_k pred_prob[i, k]`` is the suggested label, and an example is flagged when
``label_quality < threshold and predicted_label != given_label``. The same rule serves every
method, so runs of different methods are compared on equal terms: L2B's weights enter through the
model they trained, which is what makes its probabilities trustworthy on noisy data.

``alpha_share[i] = alpha_mean[i] / (alpha_mean[i] + beta_mean[i])``, the fraction of L2B's weight
kept on the given label (averaged over the epochs that produced weights), is reported beside it but
is *not* mixed into the quality: wherever the pseudo-label equals the given label both weights
multiply the same loss term, so the share is exactly 0.5 there and says nothing, and where they
differ the model already disagrees with the given label. On digits at 40 % symmetric noise,
blending the share in (mean, product, last-epoch or averaged share) never raised precision,
recall or average precision over the probability alone, and lowered the average precision
(0.97 vs 0.99); see the README's "Label issues" section for the figures. The share is NaN for
methods without weights (``ce``, bootstrapping) and where both weights were zero.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..rundir import LABEL_ISSUES, PER_EXAMPLE, read_data_info, read_files
from ..tasks import get_task

if TYPE_CHECKING:
    from ..tasks import Task

COLUMNS = ("index", "given_label", "predicted_label", "label_quality", "is_label_issue", "alpha_share")
"""Columns of a label-issue table (:func:`label_issues`, ``label_issues.csv``), in order: the
example's index, cleanlab's get_label_issues() columns (given_label, predicted_label,
label_quality, is_label_issue), then l2b's own."""
_REQUIRED = ("index", "given_label", "pred_prob")


def load_per_example(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The arrays of ``RUN_DIR/per_example.npz`` as a dict; clear errors for anything else."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {run} not found")
    path = run / PER_EXAMPLE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {run} is not a finished l2b run (per_example.npz is written when training ends)"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as err:  # a torn or foreign file
        raise ValueError(f"{path} could not be read as an npz archive: {err}") from None
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the arrays {missing} (written by an older l2b?)")
    return arrays


def _validate(per_example: Mapping[str, Any], threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold={threshold} must lie in [0, 1]")
    missing = [k for k in _REQUIRED if k not in per_example]
    if missing:
        raise ValueError(f"per-example arrays lack {missing}")
    index = np.asarray(per_example["index"]).astype(np.int64)
    given = np.asarray(per_example["given_label"]).astype(np.int64)
    prob = np.asarray(per_example["pred_prob"], dtype=np.float64)
    n = len(given)
    if prob.ndim != given.ndim + 1 or prob.shape[0] != n or prob.shape[2:] != given.shape[1:] or index.shape != (n,):
        raise ValueError(
            f"pred_prob must be (N, K, *label_shape) and index (N,) with N = {n} given labels of shape "
            f"{given.shape}; got pred_prob {prob.shape}, index {index.shape}"
        )
    if n and (given.min() < 0 or given.max() >= prob.shape[1]):
        raise ValueError(f"given labels must lie in [0, {prob.shape[1]}); got {given.min()}..{given.max()}")
    if not np.all(np.isfinite(prob)):
        raise ValueError("pred_prob holds NaN or infinite values")
    return index, given, prob


def alpha_share(per_example: Mapping[str, Any]) -> np.ndarray:
    """alpha_mean / (alpha_mean + beta_mean) per example; NaN without weights or where both are 0."""
    n = len(per_example["given_label"])
    if "alpha_mean" not in per_example or "beta_mean" not in per_example:
        return np.full(n, np.nan)
    a = np.asarray(per_example["alpha_mean"], dtype=np.float64)
    b = np.asarray(per_example["beta_mean"], dtype=np.float64)
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, a / np.where(total > 0, total, 1.0), np.nan)


def training_signal(
    alpha: np.ndarray, beta: np.ndarray, pseudo: np.ndarray, noisy: np.ndarray, clean: np.ndarray
) -> dict[str, float]:
    """Where a meta-gradient method put its loss weight, when the true labels are known.

    L2B's loss for example i is ``alpha[i] * CE(given[i]) + beta[i] * CE(pseudo[i])``. The weight
    whose target is the true class is alpha where the given label is right plus beta where the
    pseudo-label is right. Compared with cross-entropy, which puts the share ``1 - noise rate`` of
    its (uniform) weight on the true class, this tells the two ways a method can clean its signal:
    selection (less weight on mislabelled examples) and relabelling (their weight moved to a right
    pseudo-label). The weight splits by target into three parts: the true class, the given labels of
    mislabelled examples (alpha there: what teaches the network the wrong labels) and wrong
    pseudo-labels (beta there: the network's own current guesses, the rest). If neither the
    true-class share nor the wrong-label share moves from cross-entropy's, any gain is
    regularisation.

    Parameters
    ----------
    alpha, beta : (N,) float
        Per-example weights of the given-label and pseudo-label costs (any common scale; NaN where
        an example got none, e.g. not yet seen this epoch).
    pseudo : (N,) int
        Pseudo-labels (ignored where beta is 0; -1 where none).
    noisy : (N,) bool
        Whether the given label is wrong.
    clean : (N,) int
        True labels.

    Returns
    -------
    dict of str to float
        Empty when no example has weights; otherwise:

        - ``weight_on_noisy``: share of the total weight alpha + beta on mislabelled examples
          (cross-entropy: the noise rate);
        - ``true_class_share``: share of the total weight whose target is the true class
          (cross-entropy: 1 - the noise rate);
        - ``relabelled_share``: share of the total weight on mislabelled examples' right
          pseudo-labels, the part of ``true_class_share`` that relabelling contributes;
        - ``wrong_label_share``: share of the total weight on mislabelled examples' given labels
          (cross-entropy: the noise rate).
    """
    seen = ~(np.isnan(alpha) | np.isnan(beta))
    a, b = np.asarray(alpha, np.float64)[seen], np.asarray(beta, np.float64)[seen]
    total = float(a.sum() + b.sum())
    if not seen.any() or total <= 0:
        return {}
    noisy = np.asarray(noisy, bool)[seen]
    pseudo_right = (np.asarray(pseudo) == np.asarray(clean))[seen]
    return {
        "weight_on_noisy": float((a[noisy].sum() + b[noisy].sum()) / total),
        "true_class_share": float((a[~noisy].sum() + b[pseudo_right].sum()) / total),
        "relabelled_share": float(b[noisy & pseudo_right].sum() / total),
        "wrong_label_share": float(a[noisy].sum() / total),
    }


def label_issues(
    per_example: Mapping[str, Any],
    *,
    threshold: float = 0.5,
    class_names: Sequence[str] | None = None,
    paths: Mapping[int, str] | None = None,
    task: str | Task = "classification",
) -> dict[str, np.ndarray]:
    """Rank a run's training examples by how likely their given label is correct.

    Parameters
    ----------
    per_example : mapping of str to ndarray
        A run's ``per_example.npz``, or :func:`load_per_example`: ``index`` (N,),
        ``given_label`` (N,), ``pred_prob`` (N, K); ``alpha_mean`` and ``beta_mean`` (N,) when the
        method has weights.
    threshold : float
        Flag an example when its label quality is below this and the suggested label differs
        from the given one.
    class_names : sequence of str (K,) or None
        The name of every class: ``given_label`` and ``predicted_label`` come back as these names
        instead of indices.
    paths : mapping of int to str, or None
        Index -> image file (a run's files.csv, :func:`l2b.rundir.read_files`): adds a ``path``
        column after ``index``.
    task : str or Task
        The run's task (:mod:`l2b.tasks`, recorded in data.json), which says what a label issue
        is (:meth:`l2b.tasks.Task.label_quality`); the rule below is classification's.

    Returns
    -------
    dict of str to ndarray
        Numpy columns (:data:`COLUMNS`), rows sorted by ``label_quality`` ascending (most
        suspicious first; ties by index):

        - ``index``: the example's position in the data set's training split;
        - ``given_label``: the (possibly noisy) label trained on;
        - ``predicted_label``: the suggested label, argmax of the selected model's probabilities;
        - ``label_quality``: in [0, 1], higher = more likely correct: the selected model's
          probability of the given label (see the module docstring for why nothing else is mixed
          in);
        - ``is_label_issue``: ``label_quality < threshold and predicted_label != given_label``;
        - ``alpha_share``: the share of the method's weight kept on the given label,
          ``alpha_mean / (alpha_mean + beta_mean)``; NaN for methods without weights;
        - ``clean_probability``, only for runs that record one (DivideMix's ``clean_prob``: the
          two networks' mean posterior of the low-loss mixture component at the last division): a
          second label-quality score, reported beside the rule, not mixed into it.
    """
    cols = _columns(per_example, threshold, task)
    order = np.lexsort((cols["index"], cols["label_quality"]))
    keys = COLUMNS + (("clean_probability",) if "clean_probability" in cols else ())
    table = {k: cols[k][order] for k in keys}
    return _named(table, class_names=class_names, paths=paths)


def _named(
    table: dict[str, np.ndarray], *, class_names: Sequence[str] | None, paths: Mapping[int, str] | None
) -> dict[str, np.ndarray]:
    """`table` with a ``path`` column after ``index`` and label columns as class names."""
    out: dict[str, np.ndarray] = {}
    for key, col in table.items():
        if key.endswith("label") and class_names is not None:
            names = np.asarray([str(n) for n in class_names], dtype=object)
            col = names[np.asarray(col, dtype=np.int64)]
        out[key] = col
        if key == "index" and paths is not None:
            try:
                out["path"] = np.asarray([paths[int(i)] for i in col], dtype=object)
            except KeyError as err:
                raise ValueError(f"no file recorded for training example {err.args[0]}") from None
    return out


def run_names(run_dir: str | Path) -> tuple[list[str] | None, dict[int, str] | None]:
    """(class names, index -> file) that a run recorded (data.json, files.csv); None for what it
    did not record (runs on arrays have no files; runs before l2b recorded them have neither)."""
    info = read_data_info(run_dir)
    return (None if info is None else [str(n) for n in info["class_names"]]), read_files(run_dir)


def _columns(per_example: Mapping[str, Any], threshold: float, task: str | Task) -> dict[str, np.ndarray]:
    """The :func:`label_issues` columns in the order of the per-example arrays."""
    index, given, prob = _validate(per_example, threshold)
    quality, predicted, differs = get_task(task).label_quality(prob, given)
    return {
        "index": index,
        "given_label": given,
        "predicted_label": predicted,
        "label_quality": quality,
        "is_label_issue": (quality < threshold) & differs,
        "alpha_share": alpha_share(per_example),
        **(
            {"clean_probability": np.asarray(per_example["clean_prob"], dtype=np.float64)}
            if "clean_prob" in per_example
            else {}
        ),
    }


def noise_mask(per_example: Mapping[str, Any]) -> np.ndarray | None:
    """True where the given label differs from the true one, or None when true labels are unknown
    (no ``clean_label`` array, or negative entries in it)."""
    if "clean_label" not in per_example:
        return None
    clean = np.asarray(per_example["clean_label"]).astype(np.int64)
    if clean.shape != np.shape(per_example["given_label"]) or (clean < 0).any():
        return None
    return clean != np.asarray(per_example["given_label"]).astype(np.int64)


def detection_scores(
    per_example: Mapping[str, Any], *, threshold: float = 0.5, task: str = "classification"
) -> dict[str, Any] | None:
    """How well the flags find the truly mislabelled examples (None when the truth is unknown).

    Keys: ``flagged``, ``noisy`` (counts), ``precision`` (of the flagged, the share truly
    mislabelled), ``recall`` (of the truly mislabelled, the share flagged), ``f1``,
    ``average_precision`` (of the ranking by 1 - label_quality, threshold-free), ``relabel_correct``
    (flagged examples whose suggested label is the true one). A ratio with a zero denominator is NaN.
    """
    noisy = noise_mask(per_example)
    if noisy is None:
        return None
    cols = _columns(per_example, threshold, task)
    clean = np.asarray(per_example["clean_label"]).astype(np.int64)
    flag = cols["is_label_issue"]
    tp, n_flag, n_noisy = int((flag & noisy).sum()), int(flag.sum()), int(noisy.sum())
    precision = tp / n_flag if n_flag else math.nan
    recall = tp / n_noisy if n_noisy else math.nan
    f1 = 2 * precision * recall / (precision + recall) if n_flag and n_noisy and precision + recall > 0 else math.nan
    if 0 < n_noisy < len(noisy):
        from sklearn.metrics import average_precision_score

        ap = float(average_precision_score(noisy, 1.0 - cols["label_quality"]))
    else:
        ap = math.nan
    return {
        "threshold": float(threshold),
        "examples": int(len(noisy)),
        "noisy": n_noisy,
        "flagged": n_flag,
        "true_positives": tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "average_precision": ap,
        "relabel_correct": int((flag & (cols["predicted_label"] == clean)).sum()),
    }


def _cell(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, str):
        return value
    return str(int(value)) if isinstance(value, (int, np.integer)) else str(value)


def write_table(table: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write a column table as CSV (header = its keys; NaN as an empty cell, booleans True/False)."""
    path = Path(path)
    cols = list(table)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in zip(*(table[c] for c in cols)):
            w.writerow([_cell(v) for v in row])
    return path


def write_label_issues(run_dir: str | Path, *, threshold: float | None = None, out: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/label_issues.csv`` (or `out`): the :func:`label_issues` table with the
    run's class names and, for image files, their paths; return its path. For a segmentation run
    (data.json's task), one row per image, most suspect first, as
    :func:`l2b.segmentation.outputs.mask_issues` scores it: the image and mask files, the given
    mask's Dice against the selected model's prediction (``quality``), the share of its pixels the
    model labels otherwise, the class of lowest Dice, and the flag (``quality`` below `threshold`,
    default 0.8; classification's default 0.5)."""
    names, paths = run_names(run_dir)
    info = read_data_info(run_dir) or {}
    target = Path(run_dir) / LABEL_ISSUES if out is None else Path(out)
    task = get_task(info.get("task", "classification"))
    threshold = task.issue_threshold if threshold is None else threshold
    if task.name == "segmentation":
        return _write_mask_issues(run_dir, threshold, names, target)
    table = label_issues(
        load_per_example(run_dir),
        threshold=threshold,
        class_names=names,
        paths=paths,
        task=task,
    )
    return write_table(table, target)


def _write_mask_issues(run_dir: str | Path, threshold: float, names: Sequence[str] | None, target: Path) -> Path:
    from ..segmentation.outputs import mask_issues, write_mask_issues

    pe = load_per_example(run_dir)
    index = np.asarray(pe["index"], np.int64)
    files = read_files(run_dir) or {}
    masks = read_files(run_dir, column="given_label") if files else {}
    rows = mask_issues(
        np.asarray(pe["pred_prob"], np.float32),
        np.asarray(pe["given_label"], np.int64),
        [files.get(int(i), str(int(i))) for i in index],
        threshold=threshold,
        class_names=names,
    )
    for row in rows:  # positions in the run's arrays -> positions in the data set, and the mask file
        i = int(index[row["index"]])
        row["index"] = i
        row["mask_path"] = masks.get(i, "")
    return write_mask_issues(rows, target)


def corrected_labels(
    per_example: Mapping[str, Any], *, threshold: float = 0.5, task: str = "classification"
) -> dict[str, np.ndarray]:
    """The given labels with every flagged example moved to its suggested label.

    Returns ``index`` (sorted ascending), ``label`` (corrected), ``given_label`` and ``changed``
    (bool), all (N,).
    """
    t = _columns(per_example, threshold, task)
    order = np.argsort(t["index"], kind="stable")
    t = {k: v[order] for k, v in t.items()}
    label = np.where(t["is_label_issue"], t["predicted_label"], t["given_label"])
    return {"index": t["index"], "label": label, "given_label": t["given_label"], "changed": t["is_label_issue"]}
