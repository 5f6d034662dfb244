"""Data parallelism over processes with torch.distributed: setup, reductions, gathering, sharding.

One process per device (launched by ``torchrun``, or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``). The backend follows the
device: gloo for CPU, nccl for CUDA. A training step then reads::

    ctx = setup_from_env()                     # None when not launched for data parallelism
    model = wrap_ddp(model.to(ctx.device), ctx)
    optimizer = torch.optim.SGD(model.parameters(), ...)
    idx = shard(global_batch_indices, ctx.rank, ctx.world_size)           # this rank's examples
    m_idx = shard(global_meta_indices, ctx.rank, ctx.world_size)
    batch = Batch(x[idx], y[idx], meta_inputs=mx[m_idx], meta_labels=my[m_idx])
    out = method.step(model, optimizer, batch, StepContext(num_classes=K, generator=generator, dist=ctx))
    alpha = gather_cat(out.alpha)              # (B_global,), rank order = global batch order

Every rank draws the global batch and meta indices from a generator seeded alike, so they agree
without communication; ``step`` keeps that generator in step across ranks (mixup included).
``out.loss`` and ``out.stats`` are global, the same on every rank; ``out.alpha``, ``out.beta``
and ``out.pseudo_labels`` are the rank's own entries.

What is exact: the weights and the update equal those of one process on the concatenated batches
for models without coupling between samples. Train-mode BatchNorm normalises with the statistics
of each rank's shard, as plain DistributedDataParallel does (its running statistics are
broadcast from rank 0 at every forward). torch's SyncBatchNorm (:func:`convert_sync_batchnorm`)
runs on GPUs only and works with the ``ce`` / ``bootstrap`` methods; the meta methods refuse it
(the meta-gradient needs a forward-mode derivative or a double backward through it, which torch
does not provide). Under mixup each rank mixes within its own shard, with a lambda shared by all.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def is_available() -> bool:
    """Whether this torch build has torch.distributed."""
    return torch_dist.is_available()


def is_initialized() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def backend_for(device: torch.device | str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise (CPU)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel job; implements :class:`l2b.meta.Collective`.

    Attributes
    ----------
    rank, world_size : int
        Global rank and number of processes.
    local_rank : int
        Rank on this machine (the CUDA device index with nccl).
    device : torch.device
        Where this rank's model and batches live.
    backend : str
        ``gloo`` or ``nccl``.
    group : ProcessGroup or None
        The group to reduce over (``None``: the default, all processes).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _reduce(self, tensor: Tensor, op: Any) -> Tensor:
        out = tensor.detach().clone()
        if self.world_size > 1:
            torch_dist.all_reduce(out, op=op, group=self.group)
        return out

    def sum(self, tensor: Tensor) -> Tensor:
        """Element-wise sum over the ranks (a new tensor; every rank gets the same values)."""
        return self._reduce(tensor, torch_dist.ReduceOp.SUM)

    def max(self, tensor: Tensor) -> Tensor:
        """Element-wise maximum over the ranks (a new tensor)."""
        return self._reduce(tensor, torch_dist.ReduceOp.MAX)


def _resolve_device(device: torch.device | str, local_rank: int) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def setup(
    *,
    rank: int,
    world_size: int,
    device: torch.device | str = "cpu",
    init_method: str = "env://",
    local_rank: int | None = None,
    timeout: datetime.timedelta | None = None,
) -> DistContext:
    """Join (create) the default process group and return this process's :class:`DistContext`.

    Parameters
    ----------
    rank, world_size : int
    device : torch.device or str
        ``cpu`` (gloo) or ``cuda`` (nccl; without an index, ``cuda:local_rank``, which becomes the
        current CUDA device).
    init_method : str
        ``env://`` (MASTER_ADDR / MASTER_PORT), ``tcp://host:port`` or ``file:///path``.
    local_rank : int or None
        Defaults to `rank` (one machine).
    timeout : datetime.timedelta or None
        For collectives; torch's default when ``None``.
    """
    if not is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank {rank} and world_size {world_size}")
    local_rank = rank if local_rank is None else int(local_rank)
    device = _resolve_device(device, local_rank)
    backend = backend_for(device)
    if is_initialized():
        raise RuntimeError("torch.distributed is already initialised in this process; call shutdown() first")
    kwargs: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
    torch_dist.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=world_size, **kwargs)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)


def setup_from_env(
    *, device: torch.device | str | None = None, timeout: datetime.timedelta | None = None
) -> DistContext | None:
    """Set up from the variables torchrun exports; ``None`` when WORLD_SIZE is not set.

    `device` defaults to ``cuda`` (``cuda:LOCAL_RANK``, nccl) when CUDA is available, else ``cpu``
    (gloo).
    """
    if "WORLD_SIZE" not in os.environ:
        return None
    missing = [v for v in ENV_VARS if v not in os.environ and v != "LOCAL_RANK"]
    if missing:
        raise ValueError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: launch with torchrun, or set all of "
            f"{', '.join(ENV_VARS)}"
        )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return setup(
        rank=rank, world_size=world_size, device=device, init_method="env://", local_rank=local_rank, timeout=timeout
    )


class PeerLost(ConnectionError):
    """Another process of the torchrun job stopped (killed, crashed, its machine lost) while this
    one was talking to it; the run directory's last checkpoint is intact."""


def shutdown() -> None:
    """Leave the default process group (nothing when none was set up)."""
    if is_initialized():
        torch_dist.destroy_process_group()


def get_rank() -> int:
    return torch_dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return torch_dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, and in a process that is not part of a process group."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if is_initialized() and get_world_size() > 1:
        torch_dist.barrier()


def broadcast_object(obj: Any, *, src: int = 0) -> Any:
    """Rank `src`'s (picklable) `obj`, on every rank; `obj` itself in a single process.

    Uses pickle: only for objects this job made itself (a config, a run directory name).
    """
    if not is_initialized() or get_world_size() == 1:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def _comm_device(tensor: Tensor) -> torch.device:
    if torch_dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def gather_cat(tensor: Tensor) -> Tensor:
    """Every rank's `tensor` concatenated along dim 0 in rank order, returned on every rank.

    Parameters
    ----------
    tensor : Tensor, shape (N_r, ...)
        This rank's rows (e.g. per-example weights of its shard); N_r may differ between ranks
        (zero included), the other dimensions and the dtype may not.

    Returns
    -------
    Tensor, shape (sum_r N_r, ...), on `tensor`'s device; `tensor` itself in a single process.
    """
    if not is_initialized() or get_world_size() == 1:
        return tensor
    world = get_world_size()
    home = tensor.device
    dev = _comm_device(tensor)
    is_bool = tensor.dtype == torch.bool
    t = tensor.detach().to(dev)
    t = t.to(torch.uint8) if is_bool else t
    sizes = torch.tensor([t.shape[0]], dtype=torch.int64, device=dev)
    all_sizes = [torch.zeros_like(sizes) for _ in range(world)]
    torch_dist.all_gather(all_sizes, sizes)
    lengths = [int(s[0]) for s in all_sizes]
    longest = max(lengths)
    padded = t.new_zeros((longest, *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    torch_dist.all_gather(parts, padded.contiguous())
    out = torch.cat([p[:n] for p, n in zip(parts, lengths)])
    out = out.to(torch.bool) if is_bool else out
    return out.to(home)


def shard(indices: Tensor | Sequence[int] | np.ndarray, rank: int, world_size: int) -> Tensor:
    """Rank `rank`'s contiguous share of `indices` (N,), as ``torch.tensor_split`` cuts it.

    The shares concatenated in rank order give `indices` back; their sizes differ by at most one,
    the first ``N % world_size`` ranks taking the larger.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank {rank} and world_size {world_size}")
    return torch.tensor_split(torch.as_tensor(indices), world_size)[rank]


def wrap_ddp(model: nn.Module, dist: DistContext, **ddp_options: Any) -> nn.Module:
    """Wrap `model` (already on ``dist.device``) in DistributedDataParallel.

    Rank 0's parameters and buffers are copied to every rank here. `ddp_options` go to
    ``torch.nn.parallel.DistributedDataParallel`` (e.g. ``broadcast_buffers``). Pass the wrapper
    to ``Method.step`` with ``StepContext(dist=dist)``; the meta weights are computed on ``wrapper.module``.
    """
    if dist.device.type == "cuda":
        ddp_options.setdefault("device_ids", [dist.device.index])
        ddp_options.setdefault("output_device", dist.device.index)
    return nn.parallel.DistributedDataParallel(model, process_group=dist.group, **ddp_options)


def convert_sync_batchnorm(model: nn.Module, dist: DistContext) -> nn.Module:
    """Replace every BatchNorm layer with torch.nn.SyncBatchNorm (statistics over all ranks).

    Call before :func:`wrap_ddp`. Only for CUDA: torch's SyncBatchNorm refuses CPU inputs in
    train mode, so on CPU (gloo) this raises ``ValueError`` and BatchNorm stays per rank. The meta
    methods (``l2b``, ``l2rw``) refuse SyncBatchNorm (no forward-mode derivative, no double
    backward through it); use it with ``ce`` / ``bootstrap-*``.
    """
    if dist.device.type != "cuda":
        raise ValueError(
            f"SyncBatchNorm needs CUDA devices (torch {torch.__version__} refuses CPU inputs in train "
            f"mode); this job runs on {dist.device}, where BatchNorm stays per rank as in plain "
            "DistributedDataParallel"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group=dist.group)
