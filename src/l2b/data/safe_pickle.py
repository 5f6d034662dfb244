"""Loading pickled numpy data (the CIFAR "python version" batches) without running arbitrary code.

``pickle.load`` imports and calls whatever global a file names, so a crafted file can run any
command. :class:`RestrictedUnpickler` resolves only the globals that pickled numpy arrays need
and refuses everything else *before* it is called.
"""

from __future__ import annotations

import codecs
import os
import pickle
from typing import Any

import numpy as np


def _numpy_attr(module: str, name: str):
    """numpy's array-reconstruction helpers; numpy 2 moved them from numpy.core to numpy._core."""
    try:
        core = getattr(np, "_core")
    except AttributeError:  # numpy 1.x
        core = np.core
    return getattr(getattr(core, module), name)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles written by Python 3 store bytes this way
    }
    for prefix in ("numpy.core", "numpy._core"):  # files written by numpy 1.x and 2.x
        table[(f"{prefix}.multiarray", "_reconstruct")] = _numpy_attr("multiarray", "_reconstruct")
        table[(f"{prefix}.multiarray", "scalar")] = _numpy_attr("multiarray", "scalar")
        table[(f"{prefix}.numeric", "_frombuffer")] = _numpy_attr("numeric", "_frombuffer")  # protocol 5
    return table


ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals in :data:`ALLOWED_GLOBALS` (numpy arrays,
    dtypes and scalars, plus ``_codecs.encode``) and raises ValueError for any other."""

    def __init__(self, file, *, source: str = "<pickle>", encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ValueError(
                f"{self.source}: refusing to load global {module}.{name}: only numpy arrays, "
                "dtypes and plain Python containers are allowed in data pickles"
            ) from None


def load_pickle(path: str | os.PathLike) -> Any:
    """Load a data pickle through :class:`RestrictedUnpickler` with ``encoding="latin1"`` (which
    also reads Python 2 pickles such as the official CIFAR batches).

    Raises
    ------
    ValueError
        The file names a global outside the allow-list, or is not a readable pickle; the message
        names the file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, source=path).load()
    except ValueError as exc:
        if str(exc).startswith(path):
            raise
        raise ValueError(f"{path}: not a readable data pickle ({exc})") from exc
    except (
        pickle.UnpicklingError,
        EOFError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
        MemoryError,
        OverflowError,
    ) as exc:
        raise ValueError(f"{path}: not a readable data pickle ({type(exc).__name__}: {exc})") from exc
