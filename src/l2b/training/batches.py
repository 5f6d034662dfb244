"""What the trainer iterates over: one batch-source interface for data in memory and on disk,
and the typed position inside an epoch.

A batch source (:class:`TensorData` here, :class:`~l2b.training.streams.StreamData` for image
files) has ``labels`` (N,), ``len()``, ``subset(rows)``, ``eval_batches`` (every example once,
evaluation view) and the two calls the trainer's loop makes:

- ``plan_epoch(cursor, next_meta=...)`` at the start of an epoch, to fix in the cursor whatever
  the source must know ahead (a streamed set plans every meta batch and the augmentation seed, so
  its loader can run ahead of the steps);
- ``batches(cursor, meta, ...)``, the epoch's remaining :class:`Batch` es from ``cursor.step`` on.

All sampling draws from the trainer's generator in one fixed order, so an epoch resumed from a
checkpoint (cursor plus generator state) yields the batches the uninterrupted epoch would have.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..distributed import shard as shard_rows
from ..methods.step import Batch

__all__ = ["Batch", "EpochCursor", "TensorData", "take_shard"]


@dataclass
class EpochCursor:
    """Where an unfinished epoch stands, and what it has measured so far (checkpointed).

    perm : (N,) the epoch's order of the training examples, cut into `n_batches` nearly equal
    batches;  step : batches done;  losses / meta_losses : per finished step;  zero_steps : steps
    whose weights were all zero;  skipped : steps skipped for a non-finite gradient;  seconds :
    time in steps;  epoch_seed / meta_plan : the streamed sources' plan (augmentation seed, and
    the meta rows of every step), None for sources that draw as they go;  stats : what the
    method's epoch hook reported, for the epoch's record.
    """

    perm: Tensor
    n_batches: int
    step: int = 0
    losses: list[float] = field(default_factory=list)
    meta_losses: list[float] = field(default_factory=list)
    zero_steps: int = 0
    skipped: int = 0
    seconds: float = 0.0
    epoch_seed: int | None = None
    meta_plan: list[Tensor] | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> tuple[Tensor, ...]:
        """The training rows (B,) of every batch of the epoch."""
        return torch.tensor_split(self.perm, self.n_batches)

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EpochCursor:
        known = {f.name for f in fields(cls)}
        return cls(**copy.deepcopy({k: v for k, v in state.items() if k in known}))


def _named_views(views: Mapping[str, str] | tuple[str, ...]) -> dict[str, str]:
    """Views as name -> kind (a tuple of names: all ``weak``)."""
    return dict(views) if isinstance(views, Mapping) else dict.fromkeys(views, "weak")


def take_shard(batch: Tensor, shard: tuple[int, int] | None) -> Tensor:
    """This process's contiguous shard (rank, world size) of a global batch; all of it for None."""
    if shard is None:
        return batch
    return batch[shard_rows(torch.arange(batch.shape[0]), *shard).to(batch.device)]


@dataclass
class TensorData:
    """A labelled set held on the training device: inputs (N, ...), labels (N,) int64."""

    inputs: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, rows: np.ndarray | Tensor) -> TensorData:
        rows = torch.as_tensor(rows, device=self.inputs.device)
        return TensorData(self.inputs[rows], self.labels[rows])

    @staticmethod
    def _view(x: Tensor, kind: str, augment, strong, generator) -> Tensor:
        """One view of the noisy batch: a draw of the run's augmentation, or of the strong one."""
        if kind == "strong":
            return strong(x, generator=generator)
        return x if augment is None else augment(x, generator=generator)

    def eval_batches(self, batch_size: int, device: torch.device | None = None) -> Iterator[Tensor]:
        """Every example once, in order: inputs (b, ...)."""
        for i in range(0, self.inputs.shape[0], batch_size):
            x = self.inputs[i : i + batch_size]
            yield x if device is None else x.to(device)

    def plan_epoch(
        self, cursor: EpochCursor, *, generator: torch.Generator, next_meta: Callable[[], Tensor] | None
    ) -> None:
        """Nothing to plan: meta batches and augmentation are drawn step by step."""

    def batches(
        self,
        cursor: EpochCursor,
        meta: TensorData | None,
        *,
        generator: torch.Generator,
        next_meta: Callable[[], Tensor] | None,
        augment: Callable[..., Tensor] | None,
        shard: tuple[int, int] | None,
        device: torch.device,
        views: Mapping[str, str] | tuple[str, ...] = (),
        strong: Callable[..., Tensor] | None = None,
    ) -> Iterator[Batch]:
        """The batches from ``cursor.step`` on, with the named extra `views` of the noisy batch
        (name -> kind, :data:`l2b.methods.step.VIEW_KINDS`; a tuple of names: all ``weak``):
        each another draw of `augment` (copies of the inputs without one) or, for ``strong``,
        of `strong`. Per step, drawn in this order from `generator`: the meta rows (`next_meta`,
        when `meta` is given), then the noisy batch's augmentation (once for the inputs, then
        once per view in order), then the meta batch's. Augmentation is drawn for the whole batch, then
        sharded, so every process sees what one process would."""
        views = _named_views(views)
        kinds = list(views.values())
        if "strong" in kinds and strong is None:
            raise ValueError(
                "a strong view needs the strong augmentation (l2b.data.autoaugment.StrongAugment): pass strong="
            )
        rows = cursor.rows
        for step in range(cursor.step, cursor.n_batches):
            idx = rows[step]
            dev_idx = idx.to(self.inputs.device)
            x, y = self.inputs[dev_idx], self.labels[dev_idx]
            mx = my = None
            if meta is not None:
                m_idx = next_meta().to(meta.inputs.device)
                mx, my = meta.inputs[m_idx], meta.labels[m_idx]
            xs = [self._view(x, kind, augment, strong, generator) for kind in ("weak", *kinds)]
            if augment is not None and mx is not None:
                mx = augment(mx, generator=generator)
            xs, y = [take_shard(v, shard) for v in xs], take_shard(y, shard)
            if mx is not None:
                mx, my = take_shard(mx, shard), take_shard(my, shard)
            yield Batch(
                inputs=xs[0], labels=y, index=idx, meta_inputs=mx, meta_labels=my, views=dict(zip(views, xs[1:]))
            )
