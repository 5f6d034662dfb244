"""l2b: Learning to Bootstrap (Zhou et al., CVPR 2024) for training classifiers on noisy labels."""

from importlib.metadata import PackageNotFoundError, version

from .meta import MetaWeights, meta_weights, normalize_scores

try:
    __version__ = version("l2b")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# After __version__: the training modules import it.
from .api import fit  # noqa: E402
from .training import TrainConfig, Trainer, prepare_data, run_experiment  # noqa: E402

__all__ = [
    "MetaWeights",
    "TrainConfig",
    "Trainer",
    "__version__",
    "fit",
    "meta_weights",
    "normalize_scores",
    "prepare_data",
    "run_experiment",
]
