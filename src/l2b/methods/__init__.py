"""Training methods behind a registry: each is one optimizer step returning a StepOutput."""
from . import meta, simple  # noqa: F401  (registers the methods)
from .base import Method, StepOutput, create_method, list_methods, mixup, register_method

__all__ = ["Method", "StepOutput", "create_method", "list_methods", "mixup", "register_method"]
