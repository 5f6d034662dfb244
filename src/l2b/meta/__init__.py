"""The meta-gradient maths: virtual optimizer step, example scores and their normalisation.

Imports nothing else from l2b: no data, I/O or command-line concerns live here.
"""
from .engine import ENGINES, METHODS, MetaWeights, meta_weights
from .normalize import NORMALIZATIONS, normalize_scores
from .virtual_step import SGDHyper, VirtualStep, sgd_update, virtual_step

__all__ = ["ENGINES", "METHODS", "NORMALIZATIONS", "MetaWeights", "SGDHyper", "VirtualStep",
           "meta_weights", "normalize_scores", "sgd_update", "virtual_step"]
