"""Reading torch files that may come from anyone, without running code from them.

It sits below everything else in l2b (it imports no other l2b module), so the run directory
(:mod:`l2b.rundir`) can load a checkpoint without reaching up into the training code.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["load_untrusted_torch"]


def _refusal_reason(err: BaseException) -> str:
    """The informative line of a ``torch.load`` error, without torch's advice to turn the
    protection off."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation"))]
    return f"{type(err).__name__}: {(useful or lines or [''])[0]}".rstrip(": ")


def _is_truncated(err: BaseException) -> bool:
    """Whether a ``torch.load`` error means the file stops short: a zip archive without its end
    (central directory), or a pickle that runs out of input."""
    text = str(err)
    return isinstance(err, EOFError) or any(
        m in text for m in ("central directory", "Ran out of input", "failed reading zip archive", "unexpected EOF")
    )


def load_untrusted_torch(
    path: str | os.PathLike, *, what: str, map_location: Any = "cpu", if_corrupt: str | None = None
) -> Any:
    """``torch.load(path, weights_only=True)``: tensors, plain containers and numbers only.

    `if_corrupt`: what to do when the file is truncated or corrupt, added to that message.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file is truncated or corrupt (cut short while being written or copied): the
        message says so and adds `if_corrupt`. When the unpickler refuses the file (it names a
        function or class outside torch's allow-list, as a crafted file would) or the file is
        foreign: the message names the file and `what` it should be, says that nothing in it was
        executed, and gives the unpickler's reason in one line.
    """
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - an unpickler refusal or a torn / foreign file
        if _is_truncated(err):
            raise ValueError(
                f"{os.fspath(path)}: this {what} is truncated or corrupt (its data stop short, as when a "
                f"write or a copy was cut off); {if_corrupt or 'use another copy of it'}"
            ) from None
        raise ValueError(
            f"{os.fspath(path)}: refused to load this {what}: it is not a torch file holding only "
            f"tensors and plain containers; nothing in it was executed ({_refusal_reason(err)})"
        ) from None
