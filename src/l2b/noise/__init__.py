"""Label-noise generators, transition-matrix utilities and real noisy-label loaders.

The generators and utilities are numpy-only; reading ``.pt`` label files
(CIFAR-10N / CIFAR-100N) imports torch on first use.
"""

from . import cifar100 as _cifar100
from . import files as _files
from . import models as _models
from . import synthetic as _synthetic
from .cifar100 import (
    CIFAR100_ASYMMETRIC_MAP,
    CIFAR100_COARSE_LABEL_NAMES,
    CIFAR100_FINE_LABEL_NAMES,
    cifar100_superclasses,
)
from .files import LABEL_FILE_SUFFIXES, load_noisy_labels, noisy_labels_from_file
from .models import NOISE_MODELS, make_noise
from .synthetic import (
    CIFAR10_ASYMMETRIC_MAP,
    CIFAR10_LABEL_NAMES,
    CLASS_SPECIFIC_NOISE,
    NOISE_KINDS,
    NoisyLabels,
    asymmetric_noise,
    cifar10_asymmetric_noise,
    cifar100_asymmetric_noise,
    cifar100_hierarchical_noise,
    empirical_transition,
    instance_dependent_noise,
    pair_noise,
    symmetric_noise,
    transition_noise,
)

#: One list of public names, gathered from the submodules.
__all__ = sorted({*_synthetic.__all__, *_cifar100.__all__, *_files.__all__, *_models.__all__})
