"""Synthetic label noise for benchmarking noisy-label training methods.

Every generator is a pure function: it takes a 1-D array of clean integer
labels, never modifies it, and returns a :class:`NoisyLabels` record holding the
corrupted labels together with the transition matrix of the generator, the
realised noise rate and a boolean mask of the corrupted positions.

Noise is injected *per class*: for every clean class ``c`` with ``n_c``
examples, exactly ``round(rate * n_c)`` of them (chosen at random, rounding
half up) are selected for corruption. This keeps the realised noise rate of a
generator within rounding of its nominal one, independently of the class
balance. The two exceptions sample every example independently, so their
realised rate is itself random: :func:`transition_noise` (draws from the rows
of a user-given matrix) and :func:`instance_dependent_noise` (per-example flip
rates).

Randomness comes only from ``np.random.default_rng(seed)``; global random
state is neither read nor reseeded, so the same ``seed`` always gives the same
output.

Transition matrices follow the convention
``T[i, j] = P(noisy = j | clean = i)``; their rows sum to one.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..names import NOISE_KINDS
from .cifar100 import CIFAR100_ASYMMETRIC_MAP, _siblings

__all__ = [
    "CIFAR10_ASYMMETRIC_MAP",
    "CIFAR10_LABEL_NAMES",
    "CLASS_SPECIFIC_NOISE",
    "NOISE_KINDS",
    "NoisyLabels",
    "asymmetric_noise",
    "cifar100_asymmetric_noise",
    "cifar100_hierarchical_noise",
    "cifar10_asymmetric_noise",
    "empirical_transition",
    "instance_dependent_noise",
    "pair_noise",
    "symmetric_noise",
    "transition_noise",
]

CIFAR10_ASYMMETRIC_MAP: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
"""Class-to-class flips of the standard CIFAR-10 asymmetric noise benchmark:
truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog."""

CIFAR10_LABEL_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
"""CIFAR-10's classes in label order (also their alphabetical order, so an image folder of them
gets the same labels)."""

CLASS_SPECIFIC_NOISE: dict[str, str] = {
    "cifar10-asymmetric": "cifar10",
    "cifar100-asymmetric": "cifar100",
    "cifar100-hierarchical": "cifar100",
}
"""Noise kinds defined on one data set's classes: the data set they were made for."""

# NOISE_KINDS, the names accepted by make_noise, is l2b.names.NOISE_KINDS.

_CONVENTIONS = ("flip", "uniform")
_CIFAR10_NUM_CLASSES = 10
_CIFAR100_NUM_CLASSES = 100
#: Tolerance on the row sums of a user-given transition matrix.
_ROW_SUM_ATOL = 1e-6


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    """Result of a synthetic label-noise generator.

    Attributes
    ----------
    labels : np.ndarray
        Shape ``(N,)``, dtype ``int64``. The noisy labels.
    transition : np.ndarray
        Shape ``(K, K)``, dtype ``float64``. Transition matrix of the
        generator, ``T[i, j] = P(noisy = j | clean = i)``, computed from the
        nominal rate; every row sums to one.
    noise_rate : float
        Realised fraction of labels that differ from the clean ones
        (``noise_mask.mean()``; ``0.0`` for an empty array).
    noise_mask : np.ndarray
        Shape ``(N,)``, dtype ``bool``. ``True`` where the noisy label
        differs from the clean one.

    Notes
    -----
    Equality is identity-based (``eq=False``) because element-wise comparison
    of the contained arrays has no single truth value.
    """

    labels: np.ndarray
    transition: np.ndarray
    noise_rate: float
    noise_mask: np.ndarray

    @property
    def num_classes(self) -> int:
        """Number of classes ``K`` (the side of :attr:`transition`)."""
        return int(self.transition.shape[0])


# ----------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------


def _as_labels(labels, *, name: str = "labels") -> np.ndarray:
    """Validate 1-D non-negative integer labels; return them as int64 (copy only if needed)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.size == 0 and arr.dtype.kind == "f":
            # ``np.asarray([])`` is float64; an empty list is a valid empty label array.
            return np.zeros(0, dtype=np.int64)
        raise ValueError(f"`{name}` must have an integer dtype, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"`{name}` must be non-negative, got minimum label {int(arr.min())}")
    return arr.astype(np.int64, copy=False)


def _resolve_num_classes(num_classes, *arrays: np.ndarray, names: tuple[str, ...]) -> int:
    """Validate ``num_classes`` against the label arrays or infer it as ``max + 1``."""
    max_label = max((int(a.max()) for a in arrays if a.size), default=-1)
    if num_classes is None:
        if max_label < 0:
            raise ValueError("`num_classes` must be given when the labels are empty")
        return max_label + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}")
    k = int(num_classes)
    if k < 1:
        raise ValueError(f"`num_classes` must be a positive integer, got {k}")
    for arr, name in zip(arrays, names):
        if arr.size and int(arr.max()) >= k:
            raise ValueError(f"`{name}` must lie in [0, num_classes={k}), got label {int(arr.max())}")
    return k


def _check_rate(rate) -> float:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise ValueError(f"`rate` must be a real number in [0, 1], got {rate!r}")
    r = float(rate)
    if not 0.0 <= r <= 1.0:  # also rejects NaN
        raise ValueError(f"`rate` must lie in [0, 1], got {rate!r}")
    return r


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
    if int(seed) < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {int(seed)}")
    return int(seed)


def _check_mapping(mapping, num_classes: int) -> dict[int, int]:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"`mapping` must be a dict from class to class, got {type(mapping).__name__}")
    out: dict[int, int] = {}
    for src, dst in mapping.items():
        for value in (src, dst):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"`mapping` entries must be integers, got {src!r} -> {dst!r}")
            if not 0 <= int(value) < num_classes:
                raise ValueError(f"`mapping` entry {src!r} -> {dst!r} is outside [0, num_classes={num_classes})")
        if int(src) == int(dst):
            raise ValueError(f"`mapping` must not map a class to itself, got {src!r} -> {dst!r}")
        out[int(src)] = int(dst)
    return out


def _check_transition(transition) -> np.ndarray:
    """Validate a square, non-negative, row-stochastic matrix; return a float64 copy."""
    try:
        t = np.array(transition, dtype=np.float64)  # always a copy
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`transition` must be a (K, K) array of probabilities, got {transition!r}") from exc
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 1:
        raise ValueError(f"`transition` must be a square (K, K) matrix, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("`transition` must be finite, got a NaN or infinite entry")
    if (t < 0).any():
        i, j = np.argwhere(t < 0)[0]
        raise ValueError(f"`transition` must be non-negative, got transition[{i}, {j}] = {float(t[i, j])!r}")
    sums = t.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_ATOL)
    if bad.size:
        raise ValueError(
            f"`transition` rows must sum to 1 (within {_ROW_SUM_ATOL:g}), "
            f"got row {bad[0]} summing to {float(sums[bad[0]])!r}"
        )
    return t


def _check_norm_std(norm_std) -> float:
    if isinstance(norm_std, bool) or not isinstance(norm_std, numbers.Real):
        raise ValueError(f"`norm_std` must be a non-negative real number, got {norm_std!r}")
    s = float(norm_std)
    if not (np.isfinite(s) and s >= 0.0):
        raise ValueError(f"`norm_std` must be a finite non-negative number, got {norm_std!r}")
    return s


def _as_features(features, n: int) -> np.ndarray:
    """Validate ``(N, ...)`` real features; return them flattened to ``(N, D)``."""
    arr = np.asarray(features)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"`features` must have a real numeric dtype, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"`features` must have shape (N, ...) with ndim >= 2, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"`features` must have one row per label: got {arr.shape[0]} rows for {n} labels")
    flat = arr.reshape(n, -1)
    if flat.shape[1] == 0:
        raise ValueError(f"`features` must have at least one feature, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(flat).all():
        raise ValueError("`features` must be finite, got a NaN or infinite value")
    return flat


# ----------------------------------------------------------------------------
# core
# ----------------------------------------------------------------------------


def _num_corrupted(rate: float, n: int) -> int:
    """``round(rate * n)`` with halves rounded up, clipped to ``[0, n]``."""
    return min(n, max(0, int(np.floor(rate * n + 0.5))))


def _corrupt_per_class(
    clean: np.ndarray,
    num_classes: int,
    rate: float,
    seed: int,
    new_labels: Callable[[int, int, np.random.Generator], np.ndarray],
    *,
    classes=None,
) -> np.ndarray:
    """Corrupt ``round(rate * n_c)`` random examples of each class ``c``.

    ``new_labels(c, m, rng)`` returns the ``(m,)`` replacement labels for the
    ``m`` selected examples of class ``c``. Classes are visited in increasing
    order so that the random stream, and hence the result, is reproducible.
    """
    rng = np.random.default_rng(seed)
    noisy = clean.copy()
    for c in range(num_classes) if classes is None else sorted(classes):
        idx = np.flatnonzero(clean == c)
        m = _num_corrupted(rate, idx.size)
        if m == 0:
            continue
        chosen = rng.choice(idx, size=m, replace=False)
        noisy[chosen] = new_labels(c, m, rng)
    return noisy


def _sample_rows(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: one class per row of ``probs`` ``(n, K)`` from uniforms ``u`` ``(n,)``.

    Each row is normalised by its own total, so ``cdf[:, -1] == 1`` exactly and
    a class of probability zero is never drawn.
    """
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    return np.minimum((cdf <= u[:, None]).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


def _result(clean: np.ndarray, noisy: np.ndarray, transition: np.ndarray) -> NoisyLabels:
    mask = noisy != clean
    rate = float(mask.mean()) if mask.size else 0.0
    return NoisyLabels(labels=noisy, transition=transition, noise_rate=rate, noise_mask=mask)


# ----------------------------------------------------------------------------
# public generators
# ----------------------------------------------------------------------------


def symmetric_noise(
    labels,
    *,
    rate: float,
    num_classes: int | None = None,
    seed: int,
    convention: str = "flip",
) -> NoisyLabels:
    """Symmetric (class-independent) label noise.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Clean labels in ``[0, num_classes)``. Not modified.
    rate : float
        Fraction of each class selected for corruption, in ``[0, 1]``.
    num_classes : int, optional
        Number of classes ``K``; defaults to ``labels.max() + 1``.
    seed : int
        Seed for ``np.random.default_rng``.
    convention : {"flip", "uniform"}
        ``"flip"``: each selected example gets a label drawn uniformly from
        the *other* ``K - 1`` classes, so the realised rate equals ``rate``
        up to rounding; ``T = (1 - rate) I + rate / (K - 1) (1 - I)``.
        ``"uniform"`` (convention of the L2B / DivideMix research code): each
        selected example gets a label drawn uniformly from *all* ``K``
        classes and may keep its label, so the realised rate is about
        ``rate * (K - 1) / K``; ``T = (1 - rate) I + rate / K``.

    Returns
    -------
    NoisyLabels
        Noisy labels ``(N,)``, transition ``(K, K)``, realised rate, mask ``(N,)``.

    Raises
    ------
    ValueError
        On invalid labels, ``rate``, ``num_classes``, ``seed`` or
        ``convention``, and for ``convention="flip"`` with ``K = 1`` and
        ``rate > 0`` (there is no other class to flip to).
    """
    if convention not in _CONVENTIONS:
        raise ValueError(f"`convention` must be one of {_CONVENTIONS}, got {convention!r}")
    clean = _as_labels(labels)
    k = _resolve_num_classes(num_classes, clean, names=("labels",))
    rate = _check_rate(rate)
    seed = _check_seed(seed)

    if convention == "flip":
        if k == 1:
            if rate > 0:
                raise ValueError(
                    f"`rate`={rate!r} > 0 is impossible with convention='flip' and a single "
                    "class (num_classes=1): there is no other class to flip to"
                )
            return _result(clean, clean.copy(), np.ones((1, 1)))
        transition = np.full((k, k), rate / (k - 1))
        np.fill_diagonal(transition, 1.0 - rate)

        def new_labels(c: int, m: int, rng: np.random.Generator) -> np.ndarray:
            draw = rng.integers(0, k - 1, size=m)
            return draw + (draw >= c)  # skip the clean class

    else:
        transition = np.full((k, k), rate / k)
        np.fill_diagonal(transition, 1.0 - rate + rate / k)

        def new_labels(c: int, m: int, rng: np.random.Generator) -> np.ndarray:
            return rng.integers(0, k, size=m)

    noisy = _corrupt_per_class(clean, k, rate, seed, new_labels)
    return _result(clean, noisy, transition)


def asymmetric_noise(
    labels,
    *,
    rate: float,
    mapping: dict[int, int],
    num_classes: int | None = None,
    seed: int,
) -> NoisyLabels:
    """Class-dependent noise that moves examples of a source class to a target class.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Clean labels in ``[0, num_classes)``. Not modified.
    rate : float
        Fraction of each *source* class moved to its target, in ``[0, 1]``.
    mapping : dict of int to int
        ``{source: target}``; every entry must lie in ``[0, K)`` and a class
        may not map to itself. Classes absent from the keys stay clean. The
        mapping is applied to the clean labels once, so cycles such as
        ``{3: 5, 5: 3}`` swap a fraction of each class.
    num_classes : int, optional
        Number of classes ``K``; defaults to ``labels.max() + 1``.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    NoisyLabels
        Noisy labels ``(N,)``, transition ``(K, K)`` (identity except
        ``T[s, s] = 1 - rate`` and ``T[s, t] = rate`` for each ``s -> t``),
        realised rate and mask ``(N,)``.

    Raises
    ------
    ValueError
        On invalid labels, ``rate``, ``num_classes``, ``seed`` or ``mapping``.
    """
    clean = _as_labels(labels)
    k = _resolve_num_classes(num_classes, clean, names=("labels",))
    rate = _check_rate(rate)
    seed = _check_seed(seed)
    flips = _check_mapping(mapping, k)

    transition = np.eye(k)
    for src, dst in flips.items():
        transition[src, src] = 1.0 - rate
        transition[src, dst] = rate

    def new_labels(c: int, m: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(m, flips[c], dtype=np.int64)

    noisy = _corrupt_per_class(clean, k, rate, seed, new_labels, classes=flips.keys())
    return _result(clean, noisy, transition)


def pair_noise(
    labels,
    *,
    rate: float,
    num_classes: int | None = None,
    seed: int,
) -> NoisyLabels:
    """Pair-flip noise: a fraction ``rate`` of class ``c`` becomes ``(c + 1) mod K``.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Clean labels in ``[0, num_classes)``. Not modified.
    rate : float
        Fraction of each class moved to the next class, in ``[0, 1]``.
    num_classes : int, optional
        Number of classes ``K``; defaults to ``labels.max() + 1``.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    NoisyLabels
        Noisy labels ``(N,)``, transition ``(K, K)`` with ``1 - rate`` on
        the diagonal and ``rate`` at ``(c, (c + 1) mod K)``, realised rate and
        mask ``(N,)``.

    Raises
    ------
    ValueError
        On invalid inputs, and for ``K = 1`` with ``rate > 0``.
    """
    clean = _as_labels(labels)
    k = _resolve_num_classes(num_classes, clean, names=("labels",))
    rate = _check_rate(rate)
    if k == 1:
        _check_seed(seed)
        if rate > 0:
            raise ValueError(
                f"`rate`={rate!r} > 0 is impossible for pair noise with a single class "
                "(num_classes=1): there is no other class to flip to"
            )
        return _result(clean, clean.copy(), np.ones((1, 1)))
    mapping = {c: (c + 1) % k for c in range(k)}
    return asymmetric_noise(clean, rate=rate, mapping=mapping, num_classes=k, seed=seed)


def cifar10_asymmetric_noise(labels, *, rate: float, seed: int) -> NoisyLabels:
    """The standard CIFAR-10 asymmetric noise (:data:`CIFAR10_ASYMMETRIC_MAP`).

    truck (9) -> automobile (1), bird (2) -> airplane (0), deer (4) -> horse (7)
    and cat (3) <-> dog (5). Examples of airplane, automobile, frog, horse and
    ship (0, 1, 6, 7, 8) are never corrupted.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Clean CIFAR-10 labels in ``[0, 10)``. Not modified.
    rate : float
        Fraction of each source class flipped, in ``[0, 1]``.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    NoisyLabels
        With ``num_classes == 10``.
    """
    return asymmetric_noise(
        labels,
        rate=rate,
        mapping=CIFAR10_ASYMMETRIC_MAP,
        num_classes=_CIFAR10_NUM_CLASSES,
        seed=seed,
    )


def cifar100_asymmetric_noise(labels, *, rate: float, seed: int) -> NoisyLabels:
    """CIFAR-100 asymmetric noise: each class flips to the next class of its super-class.

    The fine classes of every super-class (see
    :func:`~l2b.noise.cifar100.cifar100_superclasses`) are taken in
    increasing index order and each is mapped to the next one, cyclically
    (:data:`~l2b.noise.cifar100.CIFAR100_ASYMMETRIC_MAP`); for example beaver
    (4) -> dolphin (30) -> otter (55) -> seal (72) -> whale (95) -> beaver (4).
    Exactly ``round(rate * n_c)`` examples of every class ``c`` are flipped.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Clean CIFAR-100 fine labels in ``[0, 100)``. Not modified.
    rate : float
        Fraction of each class flipped, in ``[0, 1]``.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    NoisyLabels
        With ``num_classes == 100``; the transition has ``1 - rate`` on the
        diagonal and ``rate`` at ``(c, CIFAR100_ASYMMETRIC_MAP[c])``.
    """
    return asymmetric_noise(
        labels,
        rate=rate,
        mapping=CIFAR100_ASYMMETRIC_MAP,
        num_classes=_CIFAR100_NUM_CLASSES,
        seed=seed,
    )


def cifar100_hierarchical_noise(labels, *, rate: float, seed: int) -> NoisyLabels:
    """CIFAR-100 noise that stays inside the super-class.

    Exactly ``round(rate * n_c)`` random examples of every fine class ``c``
    are relabelled uniformly among the *other* four fine classes of the
    super-class of ``c`` (see :func:`~l2b.noise.cifar100.cifar100_superclasses`),
    so a corrupted label is always wrong but its super-class is always right.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Clean CIFAR-100 fine labels in ``[0, 100)``. Not modified.
    rate : float
        Fraction of each class corrupted, in ``[0, 1]``.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    NoisyLabels
        With ``num_classes == 100``; the transition has ``1 - rate`` on the
        diagonal, ``rate / 4`` at each of the four siblings of a class and
        zero elsewhere.
    """
    clean = _as_labels(labels)
    k = _resolve_num_classes(_CIFAR100_NUM_CLASSES, clean, names=("labels",))
    rate = _check_rate(rate)
    seed = _check_seed(seed)

    groups = _siblings()  # (100, 5), each row contains the class itself
    others = np.stack([group[group != c] for c, group in enumerate(groups)])  # (100, 4)
    transition = np.eye(k) * (1.0 - rate)
    np.put_along_axis(transition, others, rate / others.shape[1], axis=1)

    def new_labels(c: int, m: int, rng: np.random.Generator) -> np.ndarray:
        return others[c][rng.integers(0, others.shape[1], size=m)]

    noisy = _corrupt_per_class(clean, k, rate, seed, new_labels)
    return _result(clean, noisy, transition)


def transition_noise(labels, *, transition, seed: int) -> NoisyLabels:
    """Noise drawn from an arbitrary class-conditional transition matrix.

    Every example is resampled independently: its noisy label is drawn from
    the row ``transition[y]`` of its clean label ``y`` (which may return
    ``y`` itself). Unlike the other generators, the number of corrupted
    examples per class is therefore random, with expectation
    ``n_c * (1 - transition[c, c])``.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Clean labels in ``[0, K)``. Not modified.
    transition : array_like of float, shape (K, K)
        ``transition[i, j] = P(noisy = j | clean = i)``: square, finite,
        non-negative, every row summing to one within ``1e-6`` (rows are
        renormalised exactly before sampling), with ``K >= labels.max() + 1``.
        Not modified.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    NoisyLabels
        Noisy labels ``(N,)``; ``transition`` is a float64 copy of the given
        matrix ``(K, K)``; realised rate and mask ``(N,)``.

    Raises
    ------
    ValueError
        On invalid labels, ``transition`` or ``seed``, or a label ``>= K``.
    """
    clean = _as_labels(labels)
    t = _check_transition(transition)
    seed = _check_seed(seed)
    k = t.shape[0]
    if clean.size and int(clean.max()) >= k:
        raise ValueError(f"`labels` must lie in [0, K={k}) for a ({k}, {k}) `transition`, got label {int(clean.max())}")

    rng = np.random.default_rng(seed)
    u = rng.random(clean.size)
    noisy = clean.copy()
    for c in np.unique(clean):
        idx = np.flatnonzero(clean == c)
        cdf = np.cumsum(t[c])
        cdf /= cdf[-1]  # cdf[-1] == 1 exactly; zero-probability classes are never drawn
        noisy[idx] = np.minimum(np.searchsorted(cdf, u[idx], side="right"), k - 1)
    return _result(clean, noisy, t)


def _truncated_normal(rng: np.random.Generator, mean: float, std: float, size: int) -> np.ndarray:
    """``size`` draws of ``N(mean, std**2)`` conditioned on ``[0, 1]`` (rejection sampling).

    A normal proposal is used for ``std < 0.5`` and a uniform one on ``[0, 1]``
    otherwise, so that the acceptance rate stays above ~0.13 for any
    ``mean`` in ``[0, 1]``.
    """
    if std == 0.0:
        return np.full(size, mean)
    out = np.empty(size)
    filled = 0
    while filled < size:
        n = 2 * (size - filled) + 16
        if std < 0.5:
            draw = rng.normal(mean, std, size=n)
            keep = draw[(draw >= 0.0) & (draw <= 1.0)]
        else:
            draw = rng.random(n)
            accept = rng.random(n) < np.exp(-0.5 * ((draw - mean) / std) ** 2)
            keep = draw[accept]
        keep = keep[: size - filled]
        out[filled : filled + keep.size] = keep
        filled += keep.size
    return out


def instance_dependent_noise(
    labels,
    features,
    *,
    rate: float,
    num_classes: int | None = None,
    seed: int,
    norm_std: float = 0.1,
) -> NoisyLabels:
    """Instance-dependent label noise (Xia et al., NeurIPS 2020).

    The generator of "Part-dependent label noise: towards instance-dependent
    label noise": the probability and the direction of a flip depend on the
    features of each example.

    1. Per-example flip rates ``q_i`` are drawn from a normal distribution
       with mean ``rate`` and standard deviation ``norm_std`` truncated to
       ``[0, 1]``.
    2. A random projection ``W`` of shape ``(D, K, K)`` is drawn from a
       standard normal (the slice ``W[:, c, :]`` for each class ``c`` in
       increasing order, so only ``D * K`` numbers are held at a time).
    3. For an example with clean label ``y`` and flattened feature vector
       ``x`` scaled to unit Euclidean norm (so the scale of the features does
       not matter; an all-zero vector stays zero), the scores
       ``p = x @ W[:, y, :]`` get ``p[y] = -inf``; then
       ``p = q * softmax(p)`` and ``p[y] = 1 - q``, and the noisy label is
       drawn from ``p``.

    Each example therefore keeps its label with probability exactly
    ``1 - q_i``; the expected noise rate is the mean of the truncated normal,
    which equals ``rate`` up to the truncation (e.g. about ``0.30`` for
    ``rate=0.3, norm_std=0.1``, but about ``0.08`` for ``rate=0``).

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Clean labels in ``[0, num_classes)``. Not modified.
    features : array_like of real, shape (N, ...)
        One feature array per example (e.g. images ``(N, C, H, W)`` or
        embeddings ``(N, D)``); flattened to ``(N, D)``. Not modified.
    rate : float
        Mean per-example flip rate, in ``[0, 1]``.
    num_classes : int, optional
        Number of classes ``K >= 2``; defaults to ``labels.max() + 1``.
    seed : int
        Seed for ``np.random.default_rng``.
    norm_std : float, default 0.1
        Standard deviation of the flip-rate distribution before truncation;
        ``0`` gives every example the flip rate ``rate``.

    Returns
    -------
    NoisyLabels
        Noisy labels ``(N,)``, realised rate and mask ``(N,)``. This
        generator has no class-level transition matrix, so ``transition`` is
        the *empirical* one of the realised labels,
        ``empirical_transition(labels, noisy, num_classes=K)`` ``(K, K)``.

    Raises
    ------
    ValueError
        On invalid labels, features, ``rate``, ``num_classes``, ``seed`` or
        ``norm_std``, and for ``K < 2``.

    Notes
    -----
    Memory use is about ``8 * D * (K + n_c)`` bytes for the largest class
    size ``n_c``; features are converted to float64 one class at a time.
    """
    clean = _as_labels(labels)
    k = _resolve_num_classes(num_classes, clean, names=("labels",))
    rate = _check_rate(rate)
    seed = _check_seed(seed)
    norm_std = _check_norm_std(norm_std)
    x = _as_features(features, clean.size)
    if k < 2:
        raise ValueError(f"instance-dependent noise needs at least two classes, got num_classes={k}")

    rng = np.random.default_rng(seed)
    flip = _truncated_normal(rng, rate, norm_std, clean.size)  # q_i
    u = rng.random(clean.size)
    noisy = clean.copy()
    for c in range(k):
        w_c = rng.standard_normal((x.shape[1], k))  # W[:, c, :], drawn even for absent classes
        idx = np.flatnonzero(clean == c)
        if idx.size == 0:
            continue
        xc = np.asarray(x[idx], dtype=np.float64)  # fancy indexing: a fresh array
        norms = np.linalg.norm(xc, axis=1, keepdims=True)
        np.divide(xc, norms, out=xc, where=norms > 0)
        scores = xc @ w_c
        scores[:, c] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        probs *= (flip[idx] / probs.sum(axis=1))[:, None]
        probs[:, c] = 1.0 - flip[idx]
        noisy[idx] = _sample_rows(probs, u[idx])
    return _result(clean, noisy, empirical_transition(clean, noisy, num_classes=k))


def empirical_transition(clean, noisy, *, num_classes: int | None = None) -> np.ndarray:
    """Row-normalised confusion counts between clean and noisy labels.

    Parameters
    ----------
    clean, noisy : array_like of int, shape (N,)
        Clean and noisy labels in ``[0, num_classes)``.
    num_classes : int, optional
        Number of classes ``K``; defaults to ``max(clean.max(), noisy.max()) + 1``.

    Returns
    -------
    np.ndarray
        Shape ``(K, K)``, dtype ``float64``; entry ``[i, j]`` is the fraction
        of examples of clean class ``i`` labelled ``j``. A class with no
        examples gets an identity row, so every row sums to one.
    """
    c = _as_labels(clean, name="clean")
    n = _as_labels(noisy, name="noisy")
    if c.shape != n.shape:
        raise ValueError(f"`clean` and `noisy` must have the same shape, got {c.shape} and {n.shape}")
    k = _resolve_num_classes(num_classes, c, n, names=("clean", "noisy"))
    counts = np.bincount(c * k + n, minlength=k * k).reshape(k, k).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    empty = totals[:, 0] == 0
    out = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    out[empty, empty] = 1.0
    return out
