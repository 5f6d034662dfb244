"""What the registries and TrainConfig declare, read from their source without importing torch.

``l2b train --help`` lists the registered methods, models and data sets and shows TrainConfig's
defaults, and every command builds that parser, argument errors and ``--help`` included. The
registries fill themselves as their modules are imported (``@register_method("name")``,
``@register_model("name")``, ``DATASETS.register("name")`` in :mod:`l2b.data`), and those modules and
TrainConfig's import torch, which alone takes about a second. So this module reads the same
declarations with :mod:`ast`, without running them: the registry stays the one place that
lists each kind of choice, and adding a method or a model needs no change here.

It reads names written as string literals and defaults written as literals (or as another
dataclass's default, ``Optimization.epochs``). Anything written otherwise, or a source file it
cannot read, makes it import the live registry instead: slower, never wrong.
``tests/test_cli_startup.py`` checks that what it reads equals the live registries and that
``--help`` imports no torch. The plain name lists (engines, noise kinds ...) need no reading:
they are defined in :mod:`l2b.names`.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

from ..options import Option

__all__ = [
    "DIFFERS",
    "add_option_flag",
    "component_options",
    "dataset_names",
    "method_names",
    "model_names",
    "train_defaults",
]

#: The shown default of an option whose entries default it differently (the bootstrap methods' beta).
DIFFERS = object()

# Where the declared options of the config's nested blocks live: the data sets, the models, the
# methods, the engines (a method that computes weights takes the engines' options).
_OPTION_PACKAGES = ("data", "models", "methods", "meta/engines")

_PACKAGE = Path(__file__).resolve().parent.parent  # the l2b package


class _Unreadable(Exception):
    """The source declares something in a form this module does not read."""


# What makes a static reading fail over to the live registry.
_FALLBACK = (_Unreadable, OSError, SyntaxError, UnicodeDecodeError)


def method_names() -> list[str]:
    """:func:`l2b.methods.list_methods`: the names given to ``register_method`` in l2b/methods/, sorted."""
    try:
        return _registered("methods", "register_method")
    except _FALLBACK:
        from ..methods import list_methods

        return list_methods()


def model_names() -> list[str]:
    """:func:`l2b.models.list_models`: the names given to ``register_model`` in l2b/models/, sorted."""
    try:
        return _registered("models", "register_model")
    except _FALLBACK:
        from ..models import list_models

        return list_models()


def dataset_names() -> list[str]:
    """The names registered in :data:`l2b.data.DATASETS`, in registration order."""
    try:
        return _registered("data", "register", sort=False)
    except _FALLBACK:
        from ..data import DATASETS

        return list(DATASETS)


def component_options() -> list[tuple[Option, Any, str]]:
    """Every option a data set, a model, a method or an engine declares, once per config key,
    with the default to show (the declared one, or :data:`DIFFERS` where entries default it
    differently: the bootstrap methods' beta) and the package declaring it (``"data"``,
    ``"models"``, ``"methods"``, ``"meta/engines"``). Read from the ``Option(...)`` calls of their
    modules, whose arguments are literals; the live registries otherwise."""
    try:
        found: list[tuple[str, Option]] = []
        for package in _OPTION_PACKAGES:
            for path in sorted((_PACKAGE / package).glob("*.py")):
                for node in _calls(path, "Option"):
                    args = [_literal(a) for a in node.args]
                    kwargs = {k.arg: _literal(k.value) for k in node.keywords if k.arg is not None}
                    if len(kwargs) != len(node.keywords):
                        raise _Unreadable(ast.unparse(node))
                    found.append((package, Option(*args, **kwargs)))
        if not found:
            raise _Unreadable("no Option(...) declarations")
        merged = _merged(found)
    except (*_FALLBACK, TypeError, ValueError):
        from ..training.config import option_keys

        package = {"data": "data", "model": "models", "method": "methods"}
        merged = _merged([(package[kind], option) for kind, option in option_keys().values()])
    return merged


def add_option_flag(group, option: Option, default: Any) -> None:
    """Add `option`'s flag to an argparse parser or group: its dest is the option's flat config key,
    absent unless given (so the config's own default applies), and its help ends with the shown
    `default` (a tuple as a list; :data:`DIFFERS`: "the method's own")."""
    import argparse

    shown = "the method's own" if default is DIFFERS else list(default) if isinstance(default, tuple) else default
    group.add_argument(
        option.flag,
        dest=option.config_key,
        default=argparse.SUPPRESS,
        help=f"{option.help.replace('%', '%%')} (default: {shown})",  # argparse reads % as a format
        **option.argparse_kwargs(),
    )


def _merged(found: list[tuple[str, Option]]) -> list[tuple[Option, Any, str]]:
    """One (declaration, shown default, package) per config key, in the order first declared."""
    out: dict[str, tuple[Option, Any, str]] = {}
    for package, option in found:
        key = option.config_key
        if key not in out:
            out[key] = (option, option.default, package)
        elif not out[key][0].same_meaning(option):
            raise _Unreadable(f"option {key!r} declared twice with different meanings")
        elif out[key][1] != option.default:
            out[key] = (out[key][0], DIFFERS, out[key][2])
    return list(out.values())


def train_defaults() -> dict[str, Any]:
    """TrainConfig's field defaults, {key: default}, as declared: before ``__post_init__``
    resolves the unset ones (``noise``, ``engine`` ...) from the data, the method and the model."""
    try:
        optimization = _dataclass_defaults("training/optim.py", "Optimization")
        return _dataclass_defaults("training/config.py", "TrainConfig", {"Optimization": optimization})
    except _FALLBACK:
        import dataclasses

        from ..training.config import TrainConfig

        return {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(TrainConfig)
        }


def _parse(path: Path) -> ast.Module:
    """The module's syntax tree, parsed once per process for each version of the file (the
    parser is built for every command, and in tests hundreds of times)."""
    return _parsed(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _parsed(path: str, mtime_ns: int) -> ast.Module:
    return ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)


def _calls(path: Path, name: str) -> tuple[ast.Call, ...]:
    """The calls of `name` (``Option``, ``register_method`` ...) in a module, in the order
    :func:`ast.walk` meets them; found once per process for each version of the file."""
    return _found_calls(str(path), path.stat().st_mtime_ns).get(name, ())


@functools.lru_cache(maxsize=256)
def _found_calls(path: str, mtime_ns: int) -> dict[str, tuple[ast.Call, ...]]:
    found: dict[str, list[ast.Call]] = {}
    for node in ast.walk(_parsed(path, mtime_ns)):
        if isinstance(node, ast.Call) and (called := _called_name(node)) is not None:
            found.setdefault(called, []).append(node)
    return {k: tuple(v) for k, v in found.items()}


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _Unreadable(ast.unparse(node)) from None


def _registered(package: str, register: str, *, sort: bool = True) -> list[str]:
    """The names passed to ``register(...)`` anywhere in the modules of `package`, sorted (or in
    the order written)."""
    names = []
    for path in sorted((_PACKAGE / package).glob("*.py")):
        for node in _calls(path, register):
            # the name: the one positional argument (options=... are read by component_options)
            if len(node.args) != 1 or not isinstance(name := _literal(node.args[0]), str):
                raise _Unreadable(ast.unparse(node))
            names.append(name)
    if not names:
        raise _Unreadable(f"no {register}(...) in {package}")
    return sorted(names) if sort else names


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _dataclass_defaults(module: str, name: str, known: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """{field: default} of the dataclass `name` of `module`. A default is a literal, or
    ``Other.field`` for a class whose defaults are in `known`."""
    for stmt in _parse(_PACKAGE / module).body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == name:
            out = {}
            for item in stmt.body:
                if not isinstance(item, ast.AnnAssign) or "ClassVar" in ast.unparse(item.annotation):
                    continue
                if not isinstance(item.target, ast.Name) or item.value is None:
                    raise _Unreadable(ast.unparse(item))
                out[item.target.id] = _default(item.value, known or {})
            return out
    raise _Unreadable(f"no class {name} in {module}")


def _default(node: ast.expr, known: dict[str, dict[str, Any]]) -> Any:
    if ast.unparse(node) == "field(default_factory=dict)":
        return {}
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in known:
        try:
            return known[node.value.id][node.attr]
        except KeyError:
            raise _Unreadable(ast.unparse(node)) from None
    return _literal(node)
