"""The meta-gradient maths: virtual optimizer step, example scores and their normalisation.

Imports nothing else from l2b: no data, I/O or command-line concerns live here.
"""

from .collective import Collective, global_any, sum_tensors
from .engine import (
    ENGINES,
    METHODS,
    ROWS,
    MetaWeights,
    dual_forward,
    meta_tangents,
    meta_weights,
    scores_from_jvp,
    weights_from_scores,
)
from .normalize import NORMALIZATIONS, normalize_scores
from .virtual_step import SGDHyper, VirtualStep, sgd_update, virtual_step

__all__ = [
    "ENGINES",
    "METHODS",
    "NORMALIZATIONS",
    "ROWS",
    "Collective",
    "MetaWeights",
    "SGDHyper",
    "VirtualStep",
    "dual_forward",
    "global_any",
    "meta_tangents",
    "meta_weights",
    "normalize_scores",
    "scores_from_jvp",
    "sgd_update",
    "sum_tensors",
    "virtual_step",
    "weights_from_scores",
]
