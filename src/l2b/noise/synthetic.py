"""Synthetic label noise for benchmarking noisy-label training methods.

Every generator is a pure function: it takes a 1-D array of clean integer
labels, never modifies it, and returns a :class:`NoisyLabels` record holding the
corrupted labels together with the transition matrix of the generator, the
realised noise rate and a boolean mask of the corrupted positions.

Noise is injected *per class*: for every clean class ``c`` with ``n_c``
examples, exactly ``round(rate * n_c)`` of them (chosen at random, rounding
half up) are selected for corruption. This keeps the realised noise rate of a
generator within rounding of its nominal one, independently of the class
balance.

Randomness comes only from ``np.random.default_rng(seed)``; global random
state is neither read nor reseeded, so the same ``seed`` always gives the same
output.

Transition matrices follow the convention
``T[i, j] = P(noisy = j | clean = i)``; their rows sum to one.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from collections.abc import Callable, Mapping

import numpy as np

__all__ = [
    "CIFAR10_ASYMMETRIC_MAP",
    "NOISE_KINDS",
    "NoisyLabels",
    "asymmetric_noise",
    "cifar10_asymmetric_noise",
    "empirical_transition",
    "make_noise",
    "pair_noise",
    "symmetric_noise",
]

#: Class-to-class flips of the standard CIFAR-10 asymmetric noise benchmark:
#: truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
CIFAR10_ASYMMETRIC_MAP: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

#: Names accepted by :func:`make_noise`.
NOISE_KINDS: tuple[str, ...] = (
    "none",
    "symmetric",
    "symmetric-uniform",
    "pair",
    "cifar10-asymmetric",
)

_CONVENTIONS = ("flip", "uniform")
_CIFAR10_NUM_CLASSES = 10


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
            raise ValueError(
                f"`{name}` must lie in [0, num_classes={k}), got label {int(arr.max())}"
            )
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
        raise ValueError(
            f"`mapping` must be a dict from class to class, got {type(mapping).__name__}"
        )
    out: dict[int, int] = {}
    for src, dst in mapping.items():
        for value in (src, dst):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"`mapping` entries must be integers, got {src!r} -> {dst!r}")
            if not 0 <= int(value) < num_classes:
                raise ValueError(
                    f"`mapping` entry {src!r} -> {dst!r} is outside [0, num_classes={num_classes})"
                )
        if int(src) == int(dst):
            raise ValueError(f"`mapping` must not map a class to itself, got {src!r} -> {dst!r}")
        out[int(src)] = int(dst)
    return out


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
        raise ValueError(
            f"`clean` and `noisy` must have the same shape, got {c.shape} and {n.shape}"
        )
    k = _resolve_num_classes(num_classes, c, n, names=("clean", "noisy"))
    counts = np.bincount(c * k + n, minlength=k * k).reshape(k, k).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    empty = totals[:, 0] == 0
    out = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    out[empty, empty] = 1.0
    return out


def make_noise(
    kind: str,
    labels,
    *,
    rate: float,
    num_classes: int | None = None,
    seed: int,
) -> NoisyLabels:
    """Dispatch to a generator by name.

    Parameters
    ----------
    kind : str
        One of :data:`NOISE_KINDS`: ``"none"`` (labels unchanged, identity
        transition; ``rate`` is validated but ignored), ``"symmetric"``
        (flip convention), ``"symmetric-uniform"`` (uniform convention),
        ``"pair"`` or ``"cifar10-asymmetric"`` (``num_classes``, if given,
        must be 10).
    labels : array_like of int, shape (N,)
        Clean labels. Not modified.
    rate : float
        Noise rate in ``[0, 1]``.
    num_classes : int, optional
        Number of classes ``K``; defaults to ``labels.max() + 1``.
    seed : int
        Seed for ``np.random.default_rng``.

    Returns
    -------
    NoisyLabels
    """
    if kind == "none":
        clean = _as_labels(labels)
        k = _resolve_num_classes(num_classes, clean, names=("labels",))
        _check_rate(rate)
        _check_seed(seed)
        return _result(clean, clean.copy(), np.eye(k))
    if kind == "symmetric":
        return symmetric_noise(
            labels, rate=rate, num_classes=num_classes, seed=seed, convention="flip"
        )
    if kind == "symmetric-uniform":
        return symmetric_noise(
            labels, rate=rate, num_classes=num_classes, seed=seed, convention="uniform"
        )
    if kind == "pair":
        return pair_noise(labels, rate=rate, num_classes=num_classes, seed=seed)
    if kind == "cifar10-asymmetric":
        if num_classes is not None and num_classes != _CIFAR10_NUM_CLASSES:
            raise ValueError(
                "`num_classes` must be 10 (or None) for kind='cifar10-asymmetric', "
                f"got {num_classes!r}"
            )
        return cifar10_asymmetric_noise(labels, rate=rate, seed=seed)
    raise ValueError(f"`kind` must be one of {NOISE_KINDS}, got {kind!r}")
