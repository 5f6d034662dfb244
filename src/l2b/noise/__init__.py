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
