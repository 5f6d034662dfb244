"""One registry idiom for every named choice: methods, models, meta-gradient engines, data sets,
noise models, tasks.

A :class:`Registry` maps names to entries (a class, a factory or a function) and each entry to
its declared options (:class:`l2b.options.Option`). Every registry answers the same way:
``names()``, ``get(name)`` (a mistyped name gets "did you mean ..."), ``options(name)``,
``option_defaults(name)``, ``register(name, options=...)`` as a decorator, and reads like a
mapping (``name in r``, ``r[name]``, ``list(r)``, ``r.items()``). The per-kind modules expose
them as ``l2b.methods.METHODS``, ``l2b.models.MODELS``, ``l2b.meta.engines.ENGINE_REGISTRY``,
``l2b.data.DATASETS``, ``l2b.noise.NOISE_MODELS`` and ``l2b.tasks.TASKS``, with their
long-standing functions (``list_methods``, ``create_model`` ...) as thin faces.

This module imports no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from .names import ENGINES, did_you_mean
from .options import Option, check_declarations, merge_declarations

__all__ = ["Registry", "names_of", "registry_of"]

T = TypeVar("T")

_REGISTRIES: dict[str, Registry] = {}
# kind -> the module whose import fills its registry
_MODULES = {
    "method": "l2b.methods",
    "model": "l2b.models",
    "engine": "l2b.meta.engines",
    "task": "l2b.tasks",
    "data set": "l2b.data",
    "noise model": "l2b.noise",
}
# kind -> its names as listed without importing torch (tests check them against the live registry)
_STATIC_NAMES = {"engine": ENGINES}


class Registry(Generic[T]):
    """Named entries of one kind, each with its declared options.

    Parameters
    ----------
    kind : str
        What an entry is, in words ("method"): error messages and ``choices_of`` use it.
    options_of : callable, optional
        The options of an entry that declares its own (a class collecting them along its bases);
        otherwise the ``options`` given to :meth:`register`.
    """

    def __init__(self, kind: str, *, options_of: Callable[[T], Iterable[Option]] | None = None):
        if kind in _REGISTRIES:
            raise ValueError(f"a {kind} registry already exists")
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._options: dict[str, tuple[Option, ...]] = {}
        self._options_of = options_of
        _REGISTRIES[kind] = self

    def register(self, name: str, *, options: Iterable[Option] = ()) -> Callable[[T], T]:
        """Decorator adding an entry under `name` with its `options` (or those the entry declares
        itself, see `options_of`). A name registered twice is refused (a silent overwrite would
        hide a clash between modules), and so is an option key that another entry declares with
        another meaning."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            declared = tuple(options) or (tuple(self._options_of(entry)) if self._options_of else ())
            declared = check_declarations(f"{self.kind} {name!r}", declared)
            merge_declarations(
                [(f"{self.kind} {n!r}", o) for n, opts in self._options.items() for o in opts]
                + [(f"{self.kind} {name!r}", o) for o in declared]
            )
            self._entries[name] = entry
            self._options[name] = declared
            return entry

        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a throwaway one clean up with it)."""
        self._entries.pop(name, None)
        self._options.pop(name, None)

    def names(self, *, sort: bool = True) -> list[str]:
        """The registered names, sorted (or in registration order)."""
        return sorted(self._entries) if sort else list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        """The names, in registration order (a registry reads like a mapping: ``list(DATASETS)``)."""
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs, in registration order."""
        return list(self._entries.items())

    def get(self, name: str) -> T:
        """The entry `name`; ValueError naming the known ones (and the closest) otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = self.names()
            raise ValueError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(known) or '(none)'}"
                f"{did_you_mean(name, known)}"
            ) from None

    def options(self, name: str) -> tuple[Option, ...]:
        """The options entry `name` declares, in declaration order."""
        self.get(name)
        return self._options[name]

    def option_defaults(self, name: str) -> dict[str, object]:
        """{option name: default} of entry `name`."""
        return {o.name: o.default for o in self.options(name)}

    def takers(self, option_name: str) -> list[str]:
        """The entries that declare an option of this name, in registration order."""
        return [n for n, opts in self._options.items() if any(o.name == option_name for o in opts)]

    def declarations(self) -> dict[str, tuple[Option, list[str]]]:
        """{config key: (declaration, the entries taking it)} over every entry (see
        :func:`l2b.options.merge_declarations`)."""
        return merge_declarations((n, o) for n, opts in self._options.items() for o in opts)


def registry_of(kind: str) -> Registry:
    """The registry of `kind` ("method", "model", "engine"), filled (its module imported)."""
    if kind not in _REGISTRIES and kind in _MODULES:
        importlib.import_module(_MODULES[kind])
    try:
        return _REGISTRIES[kind]
    except KeyError:
        raise ValueError(f"no registry of {kind!r}; known: {', '.join(_MODULES)}") from None


def names_of(kind: str) -> list[str]:
    """The names registered under `kind`, in registration order. Before the registry's module
    is imported, a kind listed without torch (the engines, :data:`l2b.names.ENGINES`) answers
    from that list, so the command line can offer them as choices at once."""
    if kind in _REGISTRIES:
        return _REGISTRIES[kind].names(sort=False)
    if kind in _STATIC_NAMES:
        return list(_STATIC_NAMES[kind])
    return registry_of(kind).names(sort=False)
