"""Index splits: held-out test sets and class-balanced clean meta sets."""

from __future__ import annotations

import numpy as np


def stratified_holdout(labels: np.ndarray, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held_out) with `fraction` of every class held out.

    Parameters
    ----------
    labels : np.ndarray, shape (N,) int
    fraction : float in (0, 1)

    Returns
    -------
    kept, held_out : sorted int64 index arrays that partition range(N).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = [
        rng.permutation(np.flatnonzero(labels == c))[: int(round(fraction * np.sum(labels == c)))]
        for c in np.unique(labels)
    ]
    held_out = np.sort(np.concatenate(held)).astype(np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held_out).astype(np.int64)
    return kept, held_out


def class_balanced_split(
    labels: np.ndarray, *, num_selected: int, num_classes: int, seed: int, allow_incomplete: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Select `num_selected` indices spread as evenly as possible over the classes.

    Every class gets ``num_selected // num_classes`` examples; the remainder goes one each to
    randomly chosen classes. Used to carve the clean meta set out of the training set.

    Parameters
    ----------
    labels : np.ndarray, shape (N,) int
        The labels the balance is computed on (the clean ones for a meta set).
    allow_incomplete : bool
        Accept fewer examples than classes (some classes then get none) and classes with too
        few examples (they give all they have) instead of raising.

    Returns
    -------
    selected, rest : sorted int64 index arrays that partition range(N).

    Raises
    ------
    ValueError
        If `num_selected` is smaller than the number of classes, or a class has too few examples.
    """
    if num_selected < num_classes and not allow_incomplete:
        raise ValueError(
            f"num_meta={num_selected} is smaller than the number of classes ({num_classes}); "
            "the meta set needs at least one example of every class (or allow_incomplete_meta=True, "
            "--allow-incomplete-meta)"
        )
    rng = np.random.default_rng(seed)
    per_class = np.full(num_classes, num_selected // num_classes)
    per_class[rng.choice(num_classes, num_selected % num_classes, replace=False)] += 1
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class[c] and allow_incomplete:
            per_class[c] = len(members)
        if len(members) < per_class[c]:
            raise ValueError(
                f"class {c} has {len(members)} examples, fewer than the {per_class[c]} the "
                f"class-balanced meta set of {num_selected} needs"
            )
        chosen.append(rng.choice(members, per_class[c], replace=False))
    selected = np.sort(np.concatenate(chosen)).astype(np.int64)
    rest = np.setdiff1d(np.arange(len(labels)), selected).astype(np.int64)
    return selected, rest
