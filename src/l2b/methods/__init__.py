"""Training methods behind a registry: each is one optimizer step returning a StepOutput."""

from . import dividemix, meta, simple, unicon  # noqa: F401  (registers the methods)
from .base import (
    METHODS,
    Method,
    NonFiniteStep,
    StepOutput,
    create_method,
    list_methods,
    method_class,
    method_options,
    mix_coefficients,
    mixup,
    register_method,
)
from .dividemix import TwoNetworks
from .step import VIEW_KINDS, Batch, StepContext

__all__ = [
    "VIEW_KINDS",
    "Batch",
    "StepContext",
    "METHODS",
    "Method",
    "NonFiniteStep",
    "StepOutput",
    "TwoNetworks",
    "create_method",
    "list_methods",
    "method_class",
    "method_options",
    "mix_coefficients",
    "mixup",
    "register_method",
]
