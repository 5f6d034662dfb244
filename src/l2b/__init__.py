"""l2b: Learning to Bootstrap (Zhou et al., CVPR 2024) for training classifiers on noisy labels.

The names below are imported on first use (PEP 562), so that importing a light part of the
package, such as the command line answering ``l2b --help``, does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
"""The package's version (PEP 440). Defined here only: pyproject.toml reads it from this line, and
``l2b --version`` and every run's ``config.yaml`` report it. CHANGELOG.md says what each one holds."""

if TYPE_CHECKING:
    from .api import fit
    from .meta import MetaWeights, meta_weights, normalize_scores
    from .training import TrainConfig, Trainer, prepare_data, run_experiment

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

# name -> the module that defines it.
_LAZY = {
    "MetaWeights": ".meta",
    "meta_weights": ".meta",
    "normalize_scores": ".meta",
    "fit": ".api",
    "TrainConfig": ".training",
    "Trainer": ".training",
    "prepare_data": ".training",
    "run_experiment": ".training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif not name.startswith("_"):  # `import l2b; l2b.models.create_model(...)`, as when all was imported
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
