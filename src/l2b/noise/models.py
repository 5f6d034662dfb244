"""The noise models a run can name (``noise`` in a config), behind one registry.

Each entry of :data:`NOISE_MODELS` is a function ``(clean, *, rate, num_classes, seed, inputs,
file, label) -> NoisyLabels``: the label-only generators of :mod:`l2b.noise.synthetic` (whose
names are :data:`l2b.names.NOISE_KINDS`, the torch-free list the command line shows), the
instance-dependent generator, which also reads the inputs, and real noisy labels read from a
file. A run's noise keys (``noise_rate``, ``noise_file``, ``noise_label``) stay top-level config
keys: the rate is what benchmark grids sweep, and which key applies to which model is checked by
the config.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..names import NOISE_KINDS
from ..registry import Registry
from .files import noisy_labels_from_file
from .synthetic import (
    NoisyLabels,
    _as_labels,
    _check_rate,
    _check_seed,
    _resolve_num_classes,
    _result,
    cifar10_asymmetric_noise,
    cifar100_asymmetric_noise,
    cifar100_hierarchical_noise,
    instance_dependent_noise,
    pair_noise,
    symmetric_noise,
)

__all__ = ["NOISE_MODELS", "make_noise"]

NoiseModel = Callable[..., NoisyLabels]

NOISE_MODELS: Registry[NoiseModel] = Registry("noise model")
"""The registered noise models (:class:`l2b.registry.Registry`), each a function
``(clean (N,), *, rate, num_classes, seed, inputs=None, file=None, label=None) -> NoisyLabels``."""

_CIFAR10, _CIFAR100 = 10, 100


@NOISE_MODELS.register("none")
def _none(clean, *, rate, num_classes, seed, **_) -> NoisyLabels:
    """Labels unchanged, identity transition (``rate`` is validated but ignored)."""
    labels = _as_labels(clean)
    k = _resolve_num_classes(num_classes, labels, names=("labels",))
    _check_rate(rate)
    _check_seed(seed)
    return _result(labels, labels.copy(), np.eye(k))


@NOISE_MODELS.register("symmetric")
def _symmetric(clean, *, rate, num_classes, seed, **_) -> NoisyLabels:
    """Each corrupted label flipped to a different class (exact rate)."""
    return symmetric_noise(clean, rate=rate, num_classes=num_classes, seed=seed, convention="flip")


@NOISE_MODELS.register("symmetric-uniform")
def _symmetric_uniform(clean, *, rate, num_classes, seed, **_) -> NoisyLabels:
    """Each corrupted label resampled over all classes (the paper's code)."""
    return symmetric_noise(clean, rate=rate, num_classes=num_classes, seed=seed, convention="uniform")


@NOISE_MODELS.register("pair")
def _pair(clean, *, rate, num_classes, seed, **_) -> NoisyLabels:
    """Class c to c + 1."""
    return pair_noise(clean, rate=rate, num_classes=num_classes, seed=seed)


def _check_classes(kind: str, num_classes: int | None, k: int) -> None:
    if num_classes is not None and num_classes != k:
        raise ValueError(f"`num_classes` must be {k} (or None) for kind={kind!r}, got {num_classes!r}")


@NOISE_MODELS.register("cifar10-asymmetric")
def _cifar10_asymmetric(clean, *, rate, num_classes, seed, **_) -> NoisyLabels:
    """CIFAR-10's class pairs (truck -> automobile ...)."""
    _check_classes("cifar10-asymmetric", num_classes, _CIFAR10)
    return cifar10_asymmetric_noise(clean, rate=rate, seed=seed)


@NOISE_MODELS.register("cifar100-asymmetric")
def _cifar100_asymmetric(clean, *, rate, num_classes, seed, **_) -> NoisyLabels:
    """The next class in CIFAR-100's super-class."""
    _check_classes("cifar100-asymmetric", num_classes, _CIFAR100)
    return cifar100_asymmetric_noise(clean, rate=rate, seed=seed)


@NOISE_MODELS.register("cifar100-hierarchical")
def _cifar100_hierarchical(clean, *, rate, num_classes, seed, **_) -> NoisyLabels:
    """Any other class of CIFAR-100's super-class."""
    _check_classes("cifar100-hierarchical", num_classes, _CIFAR100)
    return cifar100_hierarchical_noise(clean, rate=rate, seed=seed)


@NOISE_MODELS.register("instance")
def _instance(clean, *, rate, num_classes, seed, inputs=None, **_) -> NoisyLabels:
    """Instance-dependent noise (Xia et al. 2020), from the inputs."""
    if inputs is None:
        raise ValueError("noise 'instance' is drawn from the inputs: it needs the data set in memory (not streamed)")
    return instance_dependent_noise(clean, inputs, rate=rate, num_classes=num_classes, seed=seed)


@NOISE_MODELS.register("file")
def _file(clean, *, num_classes, file=None, label=None, **_) -> NoisyLabels:
    """Real noisy labels read from a file (CIFAR-10N / CIFAR-100N's ``.pt``, ``.npy`` ...)."""
    return noisy_labels_from_file(clean, file, key=label, num_classes=num_classes)


def make_noise(kind: str, labels, *, rate: float, num_classes: int | None = None, seed: int) -> NoisyLabels:
    """Dispatch to a label-only generator by name.

    Parameters
    ----------
    kind : str
        One of :data:`NOISE_KINDS`: ``"none"`` (labels unchanged, identity
        transition; ``rate`` is validated but ignored), ``"symmetric"``
        (flip convention), ``"symmetric-uniform"`` (uniform convention),
        ``"pair"``, ``"cifar10-asymmetric"`` (``num_classes``, if given,
        must be 10), ``"cifar100-asymmetric"`` or ``"cifar100-hierarchical"``
        (``num_classes``, if given, must be 100).
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

    Notes
    -----
    Generators that need more than labels and a rate have their own entry
    points and no ``kind`` here: :func:`instance_dependent_noise` (needs the
    features), :func:`transition_noise` (needs a transition matrix) and
    :func:`l2b.noise.files.noisy_labels_from_file` (real noisy labels read
    from a file, e.g. CIFAR-10N / CIFAR-100N); :data:`NOISE_MODELS` names
    them all.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"`kind` must be one of {NOISE_KINDS}, got {kind!r}")
    return NOISE_MODELS.get(kind)(labels, rate=rate, num_classes=num_classes, seed=seed)
