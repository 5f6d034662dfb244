"""Synthetic label-noise generators and transition-matrix utilities (numpy only)."""
from .synthetic import (
    CIFAR10_ASYMMETRIC_MAP,
    NOISE_KINDS,
    NoisyLabels,
    asymmetric_noise,
    cifar10_asymmetric_noise,
    empirical_transition,
    make_noise,
    pair_noise,
    symmetric_noise,
)

from .synthetic import __all__  # noqa: E402,F401  (one list of public names)
