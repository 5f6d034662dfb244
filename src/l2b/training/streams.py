"""Training data that stays on disk: image files decoded by DataLoader workers, batch by batch.

The trainer plans every epoch itself (a permutation cut into batches, and for streamed data the
meta batches of the whole epoch too), so a :class:`StreamData` only has to serve planned batches.
That keeps streaming exactly resumable: the plan lives in the checkpoint, and each example's
augmentation is seeded from (epoch seed, step, position), not from which worker decoded it or
how far the loader had prefetched when the run was interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.files import BadImageError, FileListDataset, collate_images, worker_init
from ..distributed import shard as shard_indices
from .batches import Batch, EpochCursor, take_shard

_SEED_MASK = 2**62 - 1
_VIEW_STRIDE = 1 << 24  # beyond any batch position, so the views' and the meta batch's seeds differ


def example_seed(epoch_seed: int, step: int, position: int) -> int:
    """The augmentation seed of the example at `position` of batch `step` of an epoch."""
    return (epoch_seed * 1_000_003 + step * 65_537 + position) & _SEED_MASK


@dataclass(frozen=True)
class StreamData:
    """Labelled images decoded on demand from a shared pool of files.

    Attributes
    ----------
    train_view, eval_view : FileListDataset
        The same files (the pool) with the training transform (random crop / flip) and the
        evaluation transform (resize and centre crop).
    index : np.ndarray, shape (N,) int64
        Which pool files make up this set (meta and training sets share one pool, so one loader
        serves a noisy batch and its meta batch together).
    labels : Tensor, shape (N,) int64, CPU
        The labels training uses (the noisy ones for the training set), not the files' own.
    workers : int
        DataLoader worker processes (0: decode in the training process).
    pin_memory : bool
        Pin batches for a faster copy to a CUDA device.
    """

    train_view: FileListDataset
    eval_view: FileListDataset
    index: np.ndarray
    labels: Tensor
    workers: int = 0
    pin_memory: bool = False

    def __post_init__(self) -> None:
        if len(self.index) != len(self.labels):
            raise ValueError(f"{len(self.index)} files but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, rows: np.ndarray | Tensor, labels: Tensor | None = None) -> StreamData:
        """The examples at `rows` (positions in this set), with their labels or `labels`."""
        rows = np.asarray(rows, dtype=np.int64)
        return StreamData(
            self.train_view,
            self.eval_view,
            self.index[rows],
            self.labels[torch.as_tensor(rows)] if labels is None else labels.cpu(),
            self.workers,
            self.pin_memory,
        )

    def _loader(self, dataset: FileListDataset, batches: Sequence[list]) -> Iterator[tuple[Tensor, Tensor]]:
        """Decoded batches; an undecodable file raises BadImageError naming it, as cleanly from
        a worker process as from this one (torch would wrap it in a traceback dump)."""
        extra = {"prefetch_factor": 4} if self.workers > 0 else {}
        loader = DataLoader(
            _Guarded(dataset),
            batch_sampler=_Planned(batches),
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.pin_memory,
            worker_init_fn=worker_init if self.workers > 0 else None,
            **extra,
        )
        for batch in loader:
            if isinstance(batch, BadImageError):
                raise BadImageError(batch.path, batch.reason)
            yield batch

    def planned_batches(
        self,
        plan: Sequence[tuple[Tensor, Tensor | None]],
        *,
        meta: StreamData | None,
        epoch_seed: int,
        first_step: int,
        device: torch.device,
        shard: tuple[int, int] | None = None,
        views: int = 1,
    ) -> Iterator[tuple[list[Tensor], Tensor | None]]:
        """Decoded training batches for ``plan[first_step:]``, in order.

        plan : per step, (rows of this set (B,), rows of `meta` (M,) or None). Yields the noisy
        inputs as `views` differently augmented views, each (B, C, H, W), and the meta inputs
        (M, C, H, W) or None, on `device`, all with the training transform. The labels are the
        caller's: it indexes :attr:`labels` itself.
        shard : (rank, world size): decode only this process's contiguous shard of each noisy
        and each meta batch (``torch.tensor_split``), with the augmentation one process would use.
        """
        if meta is not None and meta.train_view is not self.train_view:
            raise ValueError("the meta set must be drawn from the same pool of files as the training set")
        requests, sizes = [], []
        for step in range(first_step, len(plan)):
            rows, meta_rows = plan[step]
            files = self.index[rows.numpy()]
            # view v of example j is seeded at position j + v * _VIEW_STRIDE (view 0: at j, as always)
            noisy = [
                [(int(f), example_seed(epoch_seed, step, j + v * _VIEW_STRIDE)) for j, f in enumerate(files)]
                for v in range(views)
            ]
            clean = (
                []
                if meta_rows is None
                else [
                    (int(f), example_seed(epoch_seed, step, len(rows) + j))
                    for j, f in enumerate(meta.index[meta_rows.numpy()])
                ]
            )
            if shard is not None:
                noisy = [[view[i] for i in shard_indices(range(len(view)), *shard).tolist()] for view in noisy]
                clean = [clean[i] for i in shard_indices(range(len(clean)), *shard).tolist()]
            requests.append([item for view in noisy for item in view] + clean)
            sizes.append(len(noisy[0]))
        for (x, _labels), b in zip(self._loader(self.train_view, requests), sizes):
            x = x.to(device, non_blocking=self.pin_memory)
            xs = [x[v * b : (v + 1) * b] for v in range(views)]
            yield xs, (x[views * b :] if x.shape[0] > views * b else None)

    def plan_epoch(
        self, cursor: EpochCursor, *, generator: torch.Generator, next_meta: Callable[[], Tensor] | None
    ) -> None:
        """Fix the epoch's augmentation seed and, when the method needs meta batches, the meta rows
        of every step (drawn from `generator` in that order): the loader runs ahead of the steps."""
        cursor.epoch_seed = int(torch.randint(2**62, (1,), generator=generator))
        cursor.meta_plan = None if next_meta is None else [next_meta() for _ in range(cursor.n_batches)]

    def batches(
        self,
        cursor: EpochCursor,
        meta: StreamData | None,
        *,
        generator: torch.Generator,
        next_meta: Callable[[], Tensor] | None,
        augment: Callable[..., Tensor] | None,
        shard: tuple[int, int] | None,
        device: torch.device,
        views: Mapping[str, str] | tuple[str, ...] = (),
        strong: Callable[..., Tensor] | None = None,
    ) -> Iterator[Batch]:
        """The planned batches from ``cursor.step`` on, decoded by DataLoader workers (this
        process's shards only), each noisy example also in the named extra `views` (each another
        draw of the augmentation). Augmentation is
        the loader's, seeded per example from the plan, so `augment`, `generator` and `next_meta`
        are not used here."""
        views = dict(views) if isinstance(views, Mapping) else dict.fromkeys(views, "weak")
        if any(kind != "weak" for kind in views.values()):
            raise ValueError(
                f"views of kind {sorted(set(views.values()) - {'weak'})} are drawn on in-memory images only; "
                "this data set is streamed from disk (set lazy: false, with image_size, to hold it in memory)"
            )
        rows = cursor.rows
        meta_plan = cursor.meta_plan if meta is not None else None
        plan = list(zip(rows, meta_plan or [None] * cursor.n_batches))
        loader = self.planned_batches(
            plan,
            meta=meta if meta_plan else None,
            epoch_seed=cursor.epoch_seed,
            first_step=cursor.step,
            device=device,
            shard=shard,
            views=1 + len(views),
        )
        try:
            for step in range(cursor.step, cursor.n_batches):
                xs, mx = next(loader)
                y = take_shard(self.labels[rows[step]], shard).to(device)
                my = None if mx is None else take_shard(meta.labels[meta_plan[step]], shard).to(device)
                yield Batch(
                    inputs=xs[0],
                    labels=y,
                    index=rows[step],
                    meta_inputs=mx,
                    meta_labels=my,
                    views=dict(zip(views, xs[1:])),
                )
        finally:
            loader.close()  # stops the DataLoader workers

    def eval_batches(self, batch_size: int, device: torch.device) -> Iterator[Tensor]:
        """Every example once, in order, with the evaluation transform: inputs (b, C, H, W)."""
        files = [int(f) for f in self.index]
        batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
        for x, _labels in self._loader(self.eval_view, batches):
            yield x.to(device, non_blocking=self.pin_memory)


class _Guarded(Dataset):
    """``dataset[key]``, or the BadImageError instead of raising it (the collate reports it)."""

    def __init__(self, dataset: FileListDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        try:
            return self.dataset[key]
        except BadImageError as err:
            return err


def _collate(items: list):
    bad = [x for x in items if isinstance(x, BadImageError)]
    return bad[0] if bad else collate_images(items)


class _Planned(Sampler):
    """A batch sampler that yields given batches (lists of indices or (index, seed) pairs)."""

    def __init__(self, batches: Sequence[list]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
