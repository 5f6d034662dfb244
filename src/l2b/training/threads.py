"""How many CPU threads torch uses for a run: one policy for ``l2b train`` and the estimator.

The MLP's matrices are too small to gain from a second thread, and OpenMP threads that spin while
another job holds a core make it 30x slower (measured: 240 s against 7.6 s for ``l2b train`` on a
shared 2-core machine). So the MLP runs on one thread unless told otherwise; the convolutional
models keep torch's own choice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["check_threads", "set_process_threads", "torch_threads", "training_threads"]


def check_threads(threads: int | None) -> None:
    """A ValueError unless `threads` is None or a positive integer: checked before any work."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} must be a positive integer")


def training_threads(model: str, threads: int | None = None) -> int | None:
    """The torch thread count for training (and predicting with) `model`: `threads` when given
    (at least 1), 1 for ``mlp``, None (torch's own choice) for the other models."""
    if threads is not None:
        check_threads(threads)
        return threads
    return 1 if model == "mlp" else None


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block, the previous count restored after it
    (nothing changes when `threads` is None)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def set_process_threads(model: str, threads: int | None = None) -> None:
    """Apply :func:`training_threads` to the whole process, as a command-line program does (the
    estimator restores the count instead, with :func:`torch_threads`)."""
    count = training_threads(model, threads)
    if count is not None:
        torch.set_num_threads(count)
