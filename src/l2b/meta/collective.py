"""What the meta-gradient maths needs from data parallelism: element-wise reductions over replicas.

Under data parallelism every replica (process) holds a shard of the noisy batch and a shard of
the meta batch. The weights of one process on the concatenated batches follow from two
reductions only: the meta gradient is summed over the replicas (then divided by the global meta
count) and the normaliser of the scores (a sum, and for softmax a maximum first) is taken over
the replicas. The maths receives an object with the methods below and never sees how they
communicate (:class:`l2b.distributed.DistContext` does it with torch.distributed); ``None``
everywhere means one process and costs nothing.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Collective(Protocol):
    """Element-wise reductions over the ``world_size`` replicas of a data-parallel job.

    Every replica must call the same reductions in the same order with tensors of the same shape,
    dtype and device kind. Both methods return a new tensor and leave their argument unchanged.
    """

    @property
    def world_size(self) -> int: ...

    @property
    def rank(self) -> int: ...

    def sum(self, tensor: Tensor) -> Tensor:
        """Element-wise sum over the replicas, shape and dtype of `tensor`."""
        ...

    def max(self, tensor: Tensor) -> Tensor:
        """Element-wise maximum over the replicas, shape and dtype of `tensor`."""
        ...


def sum_tensors(collective: Collective, tensors: list[Tensor]) -> list[Tensor]:
    """Sum a list of tensors over the replicas with one reduction (flattened into one buffer).

    All tensors must share dtype and device; returns new tensors shaped like the inputs.
    """
    if not tensors:
        return []
    flat = collective.sum(torch.cat([t.reshape(-1) for t in tensors]))
    return [chunk.view_as(t) for chunk, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def global_any(flag: bool, collective: Collective | None, *, device: torch.device | str = "cpu") -> bool:
    """True when `flag` is true on at least one replica (just `flag` without a collective)."""
    if collective is None:
        return flag
    return bool(collective.max(torch.tensor([float(flag)], device=device)) > 0)
