"""Training methods behind a registry: each is one optimizer step returning a StepOutput."""

from . import meta, simple  # noqa: F401  (registers the methods)
from .base import (
    Method,
    NonFiniteStep,
    StepOutput,
    create_method,
    list_methods,
    method_class,
    method_options,
    mixup,
    register_method,
)

__all__ = [
    "Method",
    "NonFiniteStep",
    "StepOutput",
    "create_method",
    "list_methods",
    "method_class",
    "method_options",
    "mixup",
    "register_method",
]
