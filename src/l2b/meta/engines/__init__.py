"""The meta-gradient engines: one registered object per engine, one file each.

An engine turns a noisy batch and a meta batch into the raw scores r = -dL_meta/d eps (see
:mod:`l2b.meta.engine` for the maths they share) in two forms:

- :meth:`Engine.scores`, the stand-alone form that :func:`l2b.meta.meta_weights` calls: no side
  effects on the model;
- :meth:`Engine.step`, the in-step form a training method calls: the weights *and* the logits of
  the real step's forward. By default the stand-alone weights, then the real forward; engines that
  can share work with the real forward (``fused``, ``tail``, ``head``) override it.

Engines register themselves with :func:`register_engine`; :func:`create_engine` builds one by
name with its options (``head`` for ``head``, ``tail_modules`` for ``tail``), checked there. No
other module chooses between engines by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ...names import ENGINES, did_you_mean
from ...options import Option
from ...registry import Registry
from ..collective import Collective
from ..engine import MetaWeights

__all__ = [
    "ENGINE_REGISTRY",
    "Engine",
    "Scores",
    "check_engine_options",
    "create_engine",
    "engine_options",
    "list_engines",
    "register_engine",
]


class Scores(NamedTuple):
    """What an engine's stand-alone form returns for a batch of B examples."""

    raw: Tensor
    """(2, B) negative meta-gradient per cost row (row 1 zero for L2RW)."""
    pseudo: Tensor
    """(B,) int64 pseudo-labels, argmax of the train-mode logits."""
    logits: Tensor
    """(B, K) train-mode logits of the noisy batch at theta (detached)."""
    meta_loss: float
    """Mean meta cross-entropy at theta'(0)."""


class Engine:
    """One way to compute the meta-gradient scores. Subclasses set ``name`` (registered with
    :func:`register_engine`) and implement :meth:`scores`; ``head`` and ``tail_modules`` are the
    options of the engines that take them (checked by :func:`create_engine`)."""

    name: ClassVar[str] = ""
    #: the options this engine takes besides the shared ones (checked by :func:`check_engine_options`)
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, *, head: str | None = None, tail_modules: int | None = None, within: str | None = None):
        self.head, self.tail_modules, self.within = head, tail_modules, within

    def part(self, model: nn.Module) -> tuple[nn.Module, str]:
        """(the sub-module the restricted engines look in, the prefix of its names in `model`):
        `model` itself, or its sub-module ``within`` (one network of a pair, say, whose view module
        holds both networks' parameters)."""
        if self.within is None:
            return model, ""
        return model.get_submodule(self.within), f"{self.within}."

    def scores(
        self,
        model: nn.Module,
        *,
        inputs: Tensor,
        labels: Tensor,
        meta_inputs: Tensor,
        meta_labels: Tensor,
        optimizer: torch.optim.Optimizer,
        rows: int,
        collective: Collective | None = None,
        bounds: tuple[int | None, int | None] = (None, None),
    ) -> Scores:
        """The stand-alone form: raw scores (2, B) of the noisy batch `inputs` (B, ...) with
        `labels` (B,) or (B, K), from the meta batch, without changing the model. `bounds`: the
        largest noisy and meta label when the caller read them (then checked against K)."""
        raise NotImplementedError

    def step(
        self,
        net: nn.Module,
        forward: Callable[[Tensor], Tensor],
        *,
        inputs: Tensor,
        targets: Tensor,
        meta_inputs: Tensor,
        meta_labels: Tensor,
        optimizer: torch.optim.Optimizer,
        method: str,
        collective: Collective | None = None,
        normalize: str = "org",
        temperature: float = 1.0,
    ) -> tuple[Tensor, MetaWeights]:
        """The in-step form: (logits (B, K) of the real forward, keeping their graph; the weights).

        `net` is the bare module the meta-gradient is taken on; `forward` runs the real step's
        forward (`net` itself, or a DistributedDataParallel wrapper around it, or one network of a
        pair). By default the stand-alone weights (:func:`l2b.meta.meta_weights`, inputs assumed
        checked: a non-finite step is the trainer's to skip), then ``forward(inputs)``.
        """
        from ..weights import meta_weights

        mw = meta_weights(
            net,
            inputs,
            targets,
            meta_inputs,
            meta_labels,
            optimizer,
            method=method,
            engine=self,
            normalize=normalize,
            temperature=temperature,
            collective=collective,
            check_finite=False,
        )
        return forward(inputs), mw

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in (("head", self.head), ("tail_modules", self.tail_modules)) if v)
        return f"{type(self).__name__}(name={self.name!r}{options})"


def _options_of(cls: type[Engine]) -> tuple[Option, ...]:
    return cls.options


ENGINE_REGISTRY: Registry[type[Engine]] = Registry("engine", options_of=_options_of)
"""The registered engines (:class:`l2b.registry.Registry`), each with the options it declares."""


def register_engine(name: str) -> Callable[[type[Engine]], type[Engine]]:
    """Class decorator: register an :class:`Engine` subclass under `name` (one of
    :data:`l2b.names.ENGINES`, the torch-free list the command line shows)."""

    def add(cls: type[Engine]) -> type[Engine]:
        ENGINE_REGISTRY.register(name)(cls)
        cls.name = name
        return cls

    return add


def list_engines() -> list[str]:
    """The registered engine names, in registration order (that of :data:`l2b.names.ENGINES`)."""
    return ENGINE_REGISTRY.names(sort=False)


def engine_options() -> tuple[Option, ...]:
    """The options of every engine, in registration order: a method that computes meta-gradient
    weights takes them all (each applies to its own engine only; :func:`check_engine_options`)."""
    out: dict[str, Option] = {}
    for name in ENGINE_REGISTRY.names(sort=False):
        out.update((o.name, o) for o in ENGINE_REGISTRY.options(name))
    return tuple(out.values())


def check_engine_options(engine: str, head: str | None, tail_modules: int | None) -> None:
    """Refuse an engine name that is not registered, and the restricted engines' options given to
    an engine they do not apply to (``head`` is for ``head``; ``tail_modules``, required, for
    ``tail``)."""
    if engine not in ENGINE_REGISTRY:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}{did_you_mean(engine, ENGINES)}")
    if head is not None and (engine != "head" or not isinstance(head, str)):
        raise ValueError(
            f"head={head!r} names the output nn.Linear for engine='head' (a module name such as 'fc'); "
            f"it does not apply to engine={engine!r}"
        )
    if engine == "tail":
        if isinstance(tail_modules, bool) or not isinstance(tail_modules, int) or tail_modules < 1:
            raise ValueError(
                "engine='tail' needs tail_modules=k, a positive int: the number of last blocks (those with "
                f"parameters) the meta-gradient is taken over (config key engine_tail_modules); got {tail_modules!r}"
            )
    elif tail_modules is not None:
        raise ValueError(
            f"tail_modules={tail_modules!r} is the number of last blocks for engine='tail'; it does not apply "
            f"to engine={engine!r}"
        )


def create_engine(
    name: str, *, head: str | None = None, tail_modules: int | None = None, within: str | None = None
) -> Engine:
    """The engine `name` with its options, checked (:func:`check_engine_options`). ``within``: the
    name of the sub-module whose output layer (``head``) or last blocks (``tail``) the restricted
    engines use, when the model they are given holds more (DivideMix's view of network 0 holds
    both networks); ``head`` is then a name inside it."""
    check_engine_options(name, head, tail_modules)
    return ENGINE_REGISTRY.get(name)(head=head, tail_modules=tail_modules, within=within)


# The engines register themselves on import, in the order of l2b.names.ENGINES.
from . import forward as _forward  # noqa: E402, F401, I001
from . import fused as _fused  # noqa: E402, F401, I001
from . import reverse as _reverse  # noqa: E402, F401, I001
from . import head as _head  # noqa: E402, F401, I001
from . import tail as _tail  # noqa: E402, F401, I001
