"""Declared options: what a registry entry (a method, a model, an engine) can be told.

Each entry declares its options once, as :class:`Option` values: name, type, default, allowed
values or range, one line of help. Everything else is derived from those declarations: the
config's nested ``method_options`` / ``model_options`` blocks and their checks
(:class:`l2b.training.TrainConfig`), the command-line flags and their ``--help`` text
(``l2b train``), ``--print-config`` and the option tables of the docs. A new method with a new
option needs no edit anywhere else.

This module imports nothing heavy: the command line reads the declarations without importing
torch (see :mod:`l2b.cli.declared`), so an ``Option(...)`` in a registry module is written with
literal arguments only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .names import did_you_mean

__all__ = ["OPTION_TYPES", "Option", "check_declarations", "merge_declarations", "options_table"]

#: The value types an option can have. ``ints``: a tuple of ints (one or more), e.g. MLP widths.
OPTION_TYPES = ("bool", "int", "float", "str", "ints")
# A plain decimal float literal: YAML 1.1 reads 1e-2 (no dot) as a string, so a float option takes it.
_FLOAT_LITERAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Option:
    """One option of a registry entry.

    Attributes
    ----------
    name : str
        The keyword the entry's constructor (or factory) takes, and the key in the config's
        nested block (``method_options: {lambda_u: 25}``).
    type : str
        One of :data:`OPTION_TYPES`.
    default : Any
        The value when the option is not given. ``None`` means "unset" and then is allowed.
    help : str
        One line: what it does (the ``--help`` text and the docs' tables).
    choices : tuple of str, optional
        The allowed values of a ``str`` option.
    choices_of : str, optional
        The allowed values are the names of this registry (``"engine"``): kept in one place.
    minimum, maximum : float, optional
        Inclusive bounds of a number.
    above, below : float, optional
        Exclusive bounds of a number.
    key : str, optional
        The flat config key and command-line flag (``dividemix_lambda_u``,
        ``--dividemix-lambda-u``) when it differs from `name`: configs written before options
        were nested used these keys, and they are still read.
    metavar : str, optional
        The argument's name in ``--help``.
    """

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    choices_of: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    key: str | None = None
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name!r}: type must be one of {', '.join(OPTION_TYPES)}, got {self.type!r}")
        if not self.name.isidentifier():
            raise ValueError(f"option name must be a Python identifier, got {self.name!r}")
        if self.default is not None:  # a declaration's own default must pass its checks
            self.check(self.default, where=f"option {self.name!r} default:")

    @property
    def config_key(self) -> str:
        """The flat config key (and, with dashes, the flag): `key`, or `name`."""
        return self.key or self.name

    @property
    def flag(self) -> str:
        return "--" + self.config_key.replace("_", "-")

    @property
    def nullable(self) -> bool:
        return self.default is None

    def allowed(self) -> tuple[str, ...] | None:
        """The allowed values of a ``str`` option (`choices`, or the names of registry `choices_of`)."""
        if self.choices_of is not None:
            from .registry import names_of

            return tuple(names_of(self.choices_of))
        return self.choices

    def coerce(self, value: Any, *, where: str = "config") -> Any:
        """`value` as this option's type, its type checked (a YAML ``1e-2`` read as a string
        becomes a float, an int a float, a list of ints a tuple); choices and range unchecked.

        Raises ValueError ``"{where} {key}={value!r} should be of type ..."``.
        """

        def bad(what: str) -> ValueError:
            return ValueError(f"{where} {self.config_key}={value!r} should be of type {what}")

        if value is None:
            return None
        if self.type == "bool":
            if not isinstance(value, bool):
                raise bad("bool (true or false)")
            return value
        if self.type == "ints":
            items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
            if not isinstance(items, (list, tuple)) or not items:
                raise bad("tuple of ints (one or more)")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
                raise bad("tuple of ints (one or more)")
            return tuple(items)
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad("int")
            return value
        if self.type == "float":
            if isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value.strip()):
                value = float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad("float")
            try:
                return float(value)
            except OverflowError:  # an int beyond any float
                raise bad("float") from None
        if not isinstance(value, str):
            raise bad("str")
        return value

    def check(self, value: Any, *, where: str = "config") -> Any:
        """:meth:`coerce`, then the choices and the range.

        Raises ValueError ``"{where} {key}={value!r} ..."`` naming what is wrong.
        """
        value = self.coerce(value, where=where)

        def bad(why: str) -> ValueError:
            return ValueError(f"{where} {self.config_key}={value!r} {why}")

        if value is None:
            if self.nullable:
                return None
            raise bad(f"must not be empty (null): {self.help}")
        if self.type == "float" and not math.isfinite(value):
            sign = "positive and " if self.above == 0 else "non-negative and " if self.minimum == 0 else ""
            raise bad(f"must be {sign}finite")
        if self.type in ("int", "float"):
            self._check_range(value, bad)
        elif self.type == "ints":
            for v in value:
                self._check_range(v, bad)
        elif self.type == "str":
            allowed = self.allowed()
            if allowed is not None and value not in allowed:
                raise bad(f"must be one of {', '.join(allowed)}{did_you_mean(value, allowed)}")
        return value

    def _check_range(self, value: float, bad) -> None:
        if self.minimum is not None and not value >= self.minimum:
            raise bad("must be non-negative" if self.minimum == 0 else f"must be at least {self.minimum:g}")
        if self.maximum is not None and not value <= self.maximum:
            raise bad(f"must be at most {self.maximum:g}")
        if self.above is not None and not value > self.above:
            raise bad("must be positive" if self.above == 0 else f"must be above {self.above:g}")
        if self.below is not None and not value < self.below:
            raise bad(f"must be below {self.below:g}")

    def describe_range(self) -> str:
        """The allowed values in words, for tables and help ("" when any value of the type goes)."""
        allowed = self.allowed()
        if allowed is not None:
            return ", ".join(allowed)
        lo = f"[{self.minimum:g}" if self.minimum is not None else f"({self.above:g}" if self.above is not None else ""
        hi = f"{self.maximum:g}]" if self.maximum is not None else f"{self.below:g})" if self.below is not None else ""
        if lo and hi:
            return f"{lo}, {hi}"
        if lo:
            return f"{'>=' if self.minimum is not None else '>'} {lo[1:]}"
        if hi:
            return f"{'<=' if self.maximum is not None else '<'} {hi[:-1]}"
        return ""

    def argparse_kwargs(self) -> dict[str, Any]:
        """Keywords for ``ArgumentParser.add_argument`` (the flag's type, choices and metavar)."""
        import argparse

        if self.type == "bool":
            return {"action": argparse.BooleanOptionalAction}
        kw: dict[str, Any] = {"type": {"int": int, "float": float, "str": str, "ints": int}[self.type]}
        if self.type == "ints":
            kw["nargs"] = "+"
        allowed = self.allowed()
        if allowed is not None:
            kw["choices"] = allowed
        if self.metavar is not None:
            kw["metavar"] = self.metavar
        return kw

    def same_meaning(self, other: Option) -> bool:
        """Whether two declarations of one key agree on everything but the default (two methods
        may default one option differently: bootstrap's beta)."""
        mine = {k: v for k, v in vars(self).items() if k not in ("default", "help")}
        theirs = {k: v for k, v in vars(other).items() if k not in ("default", "help")}
        return mine == theirs


def check_declarations(owner: str, options: Iterable[Option]) -> tuple[Option, ...]:
    """`options` as a tuple, refusing two options of one entry with the same name or key."""
    out = tuple(options)
    for attr in ("name", "config_key"):
        seen: set[str] = set()
        for o in out:
            if not isinstance(o, Option):
                raise TypeError(f"{owner}: options must be Option declarations, got {o!r}")
            value = getattr(o, attr)
            if value in seen:
                raise ValueError(f"{owner}: option {attr} {value!r} is declared twice")
            seen.add(value)
    return out


def merge_declarations(declared: Iterable[tuple[str, Option]]) -> dict[str, tuple[Option, list[str]]]:
    """{config key: (its declaration, the entries declaring it)} over `(entry, option)` pairs.

    One key has one meaning everywhere (the same name, type, choices and range: a flag is shared
    by every entry that takes it); its default may differ between entries. Raises ValueError
    naming both entries otherwise.
    """
    out: dict[str, tuple[Option, list[str]]] = {}
    for entry, option in declared:
        key = option.config_key
        if key not in out:
            out[key] = (option, [entry])
            continue
        first, entries = out[key]
        if not first.same_meaning(option):
            raise ValueError(
                f"option {key!r} is declared differently by {entries[0]} and {entry}: one key must mean one "
                "thing (same name, type, choices and range); give one of them another key"
            )
        entries.append(entry)
    return out


def options_table(options: Iterable[Option], *, block: str) -> str:
    """A Markdown table of `options` (the docs' option tables): the nested key in `block`
    (``method_options``), the flat key and flag, type, default, allowed values, help."""
    rows = [
        f"| `{block}.{o.name}` | `{o.flag}` | {o.type} | `{o.default!r}` | {o.describe_range()} | "
        f"{o.help.replace('|', '/')} |"
        for o in options
    ]
    if not rows:
        return "(no options)"
    return "\n".join(["| key | flag | type | default | allowed | what it does |", "|---|---|---|---|---|---|", *rows])
