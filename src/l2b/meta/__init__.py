"""The meta-gradient maths: virtual optimizer step, example scores and their normalisation.

Imports nothing else from l2b: no data, I/O or command-line concerns live here.
"""

from ..names import ENGINES
from .collective import Collective, global_any, sum_tensors
from .engine import (
    METHODS,
    ROWS,
    MetaWeights,
    dual_forward,
    head_tangents,
    meta_tangents,
    pseudo_labels_from,
    scores_from_jvp,
    weights_from_scores,
    without_autocast,
)
from .engines import Engine, check_engine_options, create_engine, list_engines, register_engine
from .head import HeadCapture, capture_head, find_head, head_gradient, head_jvp
from .normalize import NORMALIZATIONS, normalize_scores
from .tail import model_blocks, tail_parameters
from .virtual_step import SGDHyper, VirtualStep, sgd_update, virtual_step
from .weights import meta_weights

__all__ = [
    "ENGINES",
    "METHODS",
    "NORMALIZATIONS",
    "ROWS",
    "Collective",
    "Engine",
    "HeadCapture",
    "MetaWeights",
    "SGDHyper",
    "VirtualStep",
    "capture_head",
    "check_engine_options",
    "create_engine",
    "dual_forward",
    "find_head",
    "global_any",
    "head_gradient",
    "head_jvp",
    "head_tangents",
    "list_engines",
    "meta_tangents",
    "meta_weights",
    "model_blocks",
    "normalize_scores",
    "pseudo_labels_from",
    "register_engine",
    "scores_from_jvp",
    "sgd_update",
    "sum_tensors",
    "tail_parameters",
    "virtual_step",
    "weights_from_scores",
    "without_autocast",
]
