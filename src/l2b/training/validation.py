"""Checks made before training starts.

:func:`validate_run_data` is what :func:`l2b.training.run.run_experiment` calls once the data, the
noisy labels and the meta split exist and before the run directory is created: the clean meta set
must hold every class (or, with ``allow_incomplete_meta``, a warning names the missing ones) and
the in-memory inputs must be finite. :func:`check_state_fits` says which tensor of a loaded state
dict does not fit a model (files themselves are read by :func:`l2b.untrusted.load_untrusted_torch`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "IncompleteMetaSetWarning",
    "check_finite_inputs",
    "check_meta_set",
    "check_state_fits",
    "validate_run_data",
]

_SHOWN = 10  # missing classes named in a message; the rest are counted


class IncompleteMetaSetWarning(UserWarning):
    """The meta set lacks some class and ``allow_incomplete_meta`` let the run go on."""


def _class_list(classes: np.ndarray, class_names: Sequence[str] | None) -> str:
    def one(c: int) -> str:
        return f"{c} ({class_names[c]!r})" if class_names is not None and c < len(class_names) else str(c)

    shown = ", ".join(one(int(c)) for c in classes[:_SHOWN])
    return shown + (f" and {len(classes) - _SHOWN} more" if len(classes) > _SHOWN else "")


def check_meta_set(
    labels: np.ndarray,
    *,
    num_classes: int,
    allow_incomplete: bool = False,
    source: str = "meta set",
    class_names: Sequence[str] | None = None,
) -> None:
    """Check that a clean meta set holds at least one example of every class.

    Parameters
    ----------
    labels : np.ndarray, shape (M,) int
        The trusted labels of the meta set.
    num_classes : int
        K; the classes are ``0 .. K-1``.
    allow_incomplete : bool
        Warn (:class:`IncompleteMetaSetWarning`) instead of raising.
    source : str
        Where the meta set came from (a file, a config key), named first in the message.
    class_names : sequence of K str, optional
        Shown beside the missing class indices.

    Raises
    ------
    ValueError
        When the meta set has fewer examples than classes or lacks a class, naming the source,
        the size and the missing classes.
    """
    labels = np.asarray(labels)
    missing = np.setdiff1d(np.arange(num_classes), labels)
    if missing.size == 0:
        return
    size = (
        f"{len(labels)} examples for {num_classes} classes, fewer than one per class"
        if len(labels) < num_classes
        else f"{len(labels)} examples"
    )
    message = (
        f"{source}: the meta set ({size}) has no example of class {_class_list(missing, class_names)} "
        f"({missing.size} of {num_classes} classes missing)"
    )
    if allow_incomplete:
        warnings.warn(
            f"{message}; training with it anyway (allow_incomplete_meta)", IncompleteMetaSetWarning, stacklevel=3
        )
        return
    raise ValueError(
        f"{message}; add examples of the missing classes, or accept the incomplete meta set with "
        "allow_incomplete_meta=True (--allow-incomplete-meta)"
    )


def check_finite_inputs(inputs: np.ndarray, *, name: str, chunk: int = 4096) -> None:
    """Raise ValueError naming the data set and the first example whose input (N, ...) holds a
    NaN or an infinity. Works through the examples in chunks (no full-size boolean copy)."""
    x = np.asarray(inputs)
    if x.dtype.kind not in "fc" or x.size == 0:
        return
    first, count = -1, 0
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk]
        bad = np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))
        if bad.size:
            first = start + int(bad[0]) if first < 0 else first
            count += bad.size
    if count:
        raise ValueError(f"data set {name!r}: input {first} has NaN or Inf values ({count} such examples)")


def _in_memory_inputs(data: Any) -> np.ndarray | None:
    """The ``.inputs`` array of an in-memory data set; None for data streamed from disk."""
    try:
        return data.inputs
    except AttributeError:  # FileListDataset: decoded lazily, checked image by image when read
        return None


def validate_run_data(config: Any, train: Any, test: Any, meta_labels: np.ndarray) -> None:
    """The checks :func:`~l2b.training.run.run_experiment` makes before creating the run directory.

    - A non-empty meta set must hold every one of the training set's classes (an error naming
      ``meta_file`` or ``num_meta`` and the missing classes; a warning with
      ``config.allow_incomplete_meta``). An empty one (``meta_source="confident"``, or
      ``num_meta=0``) is not checked.
    - Every in-memory input of `train` and `test` must be finite (NaN or Inf: an error naming the
      data set and the example).
    """
    if len(meta_labels):
        source = {
            "file": f"meta_file {config.meta_file}",
            "trusted": f"trusted set {config.trusted}",
        }.get(config.meta_source, f"config meta_source={config.meta_source!r} num_meta={config.num_meta}")
        check_meta_set(
            meta_labels,
            num_classes=train.num_classes,
            allow_incomplete=config.allow_incomplete_meta,
            source=source,
            class_names=getattr(train, "class_names", None),
        )
    for data in (train, test):
        if data is None:  # no test set
            continue
        inputs = _in_memory_inputs(data)
        if inputs is not None:
            check_finite_inputs(inputs, name=getattr(data, "name", "data"))


def check_state_fits(state: Any, model: Any, *, source: str, advice: str) -> None:
    """Raise ValueError unless `state` (a state dict loaded from `source`) has exactly the keys of
    ``model.state_dict()`` with the same shapes: the message names `source`, the first key that is
    missing, unexpected or of another shape (both shapes), and ends with `advice`."""
    import torch

    if not isinstance(state, dict):
        raise ValueError(f"{source} holds a {type(state).__name__}, not a state dict of tensors; {advice}")
    expected = model.state_dict()
    for key, want in expected.items():
        if key not in state:
            raise ValueError(f"{source} has no tensor {key!r}, which the model needs; {advice}")
        got = state[key]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ValueError(
                f"{source}: tensor {key!r} has shape {shape} but the model needs {tuple(want.shape)}; {advice}"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise ValueError(f"{source} has tensor {extra[0]!r}, which the model does not have; {advice}")
