"""Name -> factory registry for classifier models.

A model is a factory function taking keyword-only ``num_classes`` and ``in_shape`` plus its own
keyword options, decorated with :func:`register_model`. :func:`create_model` looks the factory up
by name and checks the options against the factory's signature, so a misspelt option fails loudly
with the model's name instead of deep inside a constructor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TypeVar

from torch import nn

from ..options import Option
from ..registry import Registry

__all__ = ["MODELS", "create_model", "list_models", "model_options", "register_model"]

ModelFactory = Callable[..., nn.Module]
_F = TypeVar("_F", bound=ModelFactory)

MODELS: Registry[ModelFactory] = Registry("model")
"""The registered models (:class:`l2b.registry.Registry`), each with its declared options."""
# Arguments every factory receives from create_model; they are not model options.
_COMMON_ARGS = frozenset({"num_classes", "in_shape"})


def register_model(name: str, *, options: Sequence[Option] = ()) -> Callable[[_F], _F]:
    """Decorator registering a model factory under ``name`` with its declared `options`.

    The factory must accept keyword arguments ``num_classes: int`` and
    ``in_shape: tuple[int, ...]`` and return an ``nn.Module`` mapping a batch of shape
    ``(N, *in_shape)`` to logits of shape ``(N, num_classes)``. Its other arguments are its
    options, each declared as an :class:`l2b.options.Option` (what configs, the command line and
    the docs read); a factory taking ``**kwargs`` may declare any.

    Raises
    ------
    ValueError
        If ``name`` is already registered (a silent overwrite would hide a clash between modules).
    TypeError
        A factory without the shape arguments, or whose arguments differ from its declared options.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorator(factory: _F) -> _F:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        params = inspect.signature(factory).parameters
        missing = sorted(a for a in _COMMON_ARGS if a not in params)
        if missing and not _accepts_var_kwargs(factory):
            raise TypeError(f"model factory {name!r} must accept {', '.join(missing)}")
        declared = sorted(o.name for o in options)
        if not _accepts_var_kwargs(factory) and declared != sorted(_model_options(factory)):
            raise TypeError(
                f"model {name!r}: declared options {declared} but the factory takes {sorted(_model_options(factory))}; "
                "declare each of its arguments besides num_classes and in_shape as an Option"
            )
        MODELS.register(name, options=options)(factory)
        return factory

    return decorator


def list_models(*, sort: bool = True) -> list[str]:
    """Names of all registered models, sorted (or in the order they were registered)."""
    return MODELS.names(sort=sort)


def model_options(name: str) -> dict[str, object]:
    """{option: default} of model ``name``, as declared.

    Raises
    ------
    ValueError
        Unknown model name (the message lists the known names).
    """
    return MODELS.option_defaults(name)


def create_model(name: str, *, num_classes: int, in_shape: Sequence[int], **kwargs: object) -> nn.Module:
    """Build the registered model ``name``.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    num_classes : int
        Number of output logits K (>= 1).
    in_shape : sequence of int
        Shape of one example without the batch dimension, e.g. ``(64,)`` for flat features or
        ``(3, 32, 32)`` for images.
    **kwargs
        Model-specific options (see each factory's docstring).

    Returns
    -------
    nn.Module
        Maps input of shape ``(N, *in_shape)`` to logits of shape ``(N, num_classes)``.

    Raises
    ------
    ValueError
        Unknown model name (the message lists the known names), or invalid
        ``num_classes`` / ``in_shape``.
    TypeError
        An option the model does not accept (the message names the model).
    """
    factory = MODELS.get(name)
    if not _accepts_var_kwargs(factory):
        accepted = frozenset(MODELS.option_defaults(name))
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            options = ", ".join(sorted(accepted)) or "none"
            raise TypeError(
                f"model {name!r} got unexpected keyword argument(s) {', '.join(unknown)}; accepted options: {options}"
            )
    # Passing these through create_model's own arguments is the only supported route.
    clash = sorted(_COMMON_ARGS & set(kwargs))
    if clash:
        raise TypeError(f"model {name!r}: {', '.join(clash)} given twice")

    # bool is an int subclass; num_classes=True is almost certainly a bug.
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    shape = _check_shape(in_shape)
    return factory(num_classes=num_classes, in_shape=shape, **kwargs)


def _check_shape(in_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        dims = tuple(in_shape)
    except TypeError:
        raise ValueError(f"in_shape must be a sequence of positive ints, got {in_shape!r}") from None
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"in_shape must be a non-empty sequence of positive ints, got {in_shape!r}")
    return dims


def _accepts_var_kwargs(factory: ModelFactory) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())


def _model_options(factory: ModelFactory) -> frozenset[str]:
    params = inspect.signature(factory).parameters.values()
    return frozenset(
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name not in _COMMON_ARGS
    )
