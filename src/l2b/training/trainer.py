"""The training loop: one method step per batch, evaluation and selection every epoch.

The trainer knows nothing about which method it runs: it logs what each step returns, calls the
method's epoch hook and checkpoints the method's state without reading them. All of its state
(model, optimizer, scheduler, RNG states, position inside an epoch, history, best epoch,
per-example statistics, the method's own state) is one plain dict (:meth:`Trainer.state_dict`),
so a run can be checkpointed at any step boundary and resumed to the same result.

Data come from a batch source (:mod:`l2b.training.batches`): tensors in memory or image files
streamed from disk behind one interface, so the loop has one path for both.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..distributed import DistContext, broadcast_object, gather_cat, wrap_ddp
from ..methods import Batch, Method, NonFiniteStep, StepContext, StepOutput
from ..reports import training_signal
from ..tasks import Task, get_task
from .batches import EpochCursor, TensorData
from .optim import batches_per_epoch
from .streams import StreamData

__all__ = [
    "FitResult",
    "GracefulStop",
    "Interrupted",
    "NonFiniteStep",
    "PerExample",
    "Trainer",
    "TrainingDiverged",
    "evaluate",
    "predict_proba",
]

Source = TensorData | StreamData


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal: Ctrl-C (SIGINT) or SIGTERM, which ``signum`` holds."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class GracefulStop(Interrupted):
    """Ctrl-C or SIGTERM honoured at a step boundary: the trainer's state is consistent there
    (and the checkpoint written on the way out holds it)."""


#: The signals a run stops on gracefully: Ctrl-C, and what a job scheduler or ``kill`` sends.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss, meta-gradient or gradient."""


@torch.no_grad()
def predict_proba(model: nn.Module, inputs: Tensor | Source, *, batch_size: int = 1024) -> Tensor:
    """Eval-mode class probabilities (N, K) for inputs (N, ...) or every example of a batch source
    (a stream uses its evaluation transform); on the model's device. The model's mode is restored."""
    was_training = model.training
    model.eval()
    if isinstance(inputs, StreamData):
        chunks = inputs.eval_batches(min(batch_size, 256), next(model.parameters()).device)
    elif isinstance(inputs, TensorData):
        chunks = inputs.eval_batches(batch_size)
    else:
        chunks = (inputs[i : i + batch_size] for i in range(0, inputs.shape[0], batch_size))
    out = torch.cat([torch.softmax(model(x).float(), dim=1) for x in chunks])
    model.train(was_training)
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module, data: Source, *, batch_size: int = 256, task: Task | str = "classification"
) -> tuple[float, float]:
    """Eval-mode (accuracy, mean cross-entropy) of `model` on `data`, as `task` scores them."""
    probs = predict_proba(model, data, batch_size=batch_size)
    scores = get_task(task).scores(probs, data.labels)
    return scores["accuracy"], scores["loss"]


class PerExample:
    """Per-example statistics, indexed like the training set (N,); ``pseudo`` and ``pred`` have
    the shape of the labels (N, *label_shape).

    ``alpha`` / ``beta`` / ``pseudo``: the latest epoch's values (alpha, beta scaled by the batch
    size, so uniform weighting reads 1; NaN / -1 where not yet seen). ``pred``: the class each
    example's own training step predicted this epoch (train mode, before the update; -1 where the
    step reported none, e.g. under mixup). ``alpha_sum`` / ``beta_sum`` / ``epochs``: sums over
    every epoch that produced weights, for averages. ``alpha_map`` / ``beta_map``: for labels with
    positions (masks: label_shape (H, W)), the latest epoch's weight of each position's two costs
    (N, *label_shape) float16, relative to its step's mean weight per position (both costs
    together), so a position weighted like the batch's average reads 1 in total; None for
    one label per example.
    """

    def __init__(self, n: int, label_shape: tuple[int, ...] = ()):
        self.alpha, self.beta = np.full(n, np.nan), np.full(n, np.nan)
        self.alpha_map = np.full((n, *label_shape), np.nan, dtype=np.float16) if label_shape else None
        self.beta_map = None if self.alpha_map is None else self.alpha_map.copy()
        self.pseudo = np.full((n, *label_shape), -1, dtype=np.int64)
        self.pred = np.full((n, *label_shape), -1, dtype=np.int64)
        self.alpha_sum, self.beta_sum = np.zeros(n), np.zeros(n)
        self.epochs = 0

    def record(self, idx: np.ndarray, out: StepOutput, reduce: Callable[[Tensor], Tensor] = lambda w: w) -> None:
        """Keep a step's per-example outputs; `reduce` makes per-position weights one per example
        (:meth:`l2b.tasks.Task.reduce`)."""
        if out.alpha is not None:
            self.alpha[idx] = reduce(out.alpha).double().cpu().numpy() * len(idx)
            self.beta[idx] = reduce(out.beta).double().cpu().numpy() * len(idx)
            if self.alpha_map is not None and out.alpha.dim() > 1:
                mean = float((out.alpha + out.beta).double().mean())
                scale = 1.0 / mean if mean > 0 else 0.0  # an all-zero step: every position reads 0
                self.alpha_map[idx] = (out.alpha.double() * scale).cpu().numpy()
                self.beta_map[idx] = (out.beta.double() * scale).cpu().numpy()
        if out.pseudo_labels is not None:
            self.pseudo[idx] = out.pseudo_labels.cpu().numpy()
        if out.predictions is not None:
            self.pred[idx] = out.predictions.cpu().numpy()

    def close_epoch(self) -> None:
        if not np.all(np.isnan(self.alpha)):
            self.alpha_sum += np.nan_to_num(self.alpha)
            self.beta_sum += np.nan_to_num(self.beta)
            self.epochs += 1

    def start_epoch(self) -> None:
        self.alpha[:], self.beta[:], self.pseudo[:], self.pred[:] = np.nan, np.nan, -1, -1
        if self.alpha_map is not None:
            self.alpha_map[:], self.beta_map[:] = np.nan, np.nan

    @property
    def alpha_mean(self) -> np.ndarray:
        return self.alpha_sum / max(self.epochs, 1) if self.epochs else np.full_like(self.alpha_sum, np.nan)

    @property
    def beta_mean(self) -> np.ndarray:
        return self.beta_sum / max(self.epochs, 1) if self.epochs else np.full_like(self.beta_sum, np.nan)

    def state_dict(self) -> dict[str, Any]:
        """Tensors, not arrays, so checkpoints load with torch.load(weights_only=True)."""
        return {k: (torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v.numpy().copy() if isinstance(v, Tensor) else v)


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_state: dict[str, Tensor]
    per_example: PerExample
    seconds: float


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class Trainer:
    """Train `model` with `method` on a batch source (tensors in memory or streamed image files).

    Parameters
    ----------
    model : nn.Module
        The model, already on its device (the trainer's `device` is that of its parameters).
    method : Method
        The method after warm-up; warm-up epochs use plain cross-entropy.
    optimizer : torch.optim.Optimizer
        Steps `model`'s parameters.
    scheduler : torch.optim.lr_scheduler.LRScheduler or None
        Stepped once per batch.
    num_classes : int
        Number of classes K.
    batch_size, meta_batch_size : int
        Every epoch covers every training example once: a random permutation cut into
        ceil(N / batch_size) nearly equal batches (nothing is dropped). Meta batches are drawn
        from reshuffled passes over the meta set.
    generator : torch.Generator (CPU)
        All of the trainer's sampling (batches, meta batches, mixup) draws from it.
    warmup_epochs : int
        Epochs trained with ``method.warmup_method()`` (plain cross-entropy, with the method's
        mixup and clipping, for most methods) before `method` takes over.
    progress : bool
        Show progress bars.
    callbacks : tuple of callables
        Each receives every epoch's record dict.
    checkpoint : callable or None
        Receives :meth:`state_dict` after every epoch and, on Ctrl-C or SIGTERM, at the end of the
        step in progress (a second signal stops at once, without it).
    meta_selector : callable (probs (N, K), given labels (N,)) -> indices (M,), or None
        With no clean meta set: after warm-up, at the start of every epoch, the meta set becomes
        the training examples at these indices with their given labels (e.g.
        :func:`l2b.training.meta_sources.confident_meta_set`). The last epoch is then selected,
        since no clean data exists to select on.
    augment : callable (batch (B, C, H, W), *, generator) -> batch, or None
        Applied to every noisy and meta training batch on the device, drawing from the trainer's
        generator (e.g. :func:`l2b.data.augment_batch`, random crop and flip).
    max_bad_steps : int
        A step whose gradient is not finite (a NaN / Inf loss, meta-gradient or gradient) is
        skipped: parameters, optimizer state and BatchNorm statistics stay as before it; the
        schedule still advances. Skips are counted (``skipped_steps`` in the epoch record) and
        logged; this many in a row raise :class:`TrainingDiverged` (the last checkpoint, written
        at the end of the previous epoch, is left as it was).
    log : callable or None
        Receives warning lines.
    test_every : int
        The test set passed to :meth:`fit` is evaluated after every `test_every`-th epoch, the
        last epoch and every epoch that improves the meta accuracy (so the selected epoch's
        figure is always there); other records have no ``test_accuracy``.
    strong_augment : callable (batch, *, generator) -> batch, or None
        Draws the ``strong`` views a method declares (``Method.views``), like `augment` (e.g.
        :class:`l2b.data.autoaugment.StrongAugment`).
    task : Task or str
        What depends on the kind of label (:mod:`l2b.tasks`): the label shape, the evaluation
        figures and the per-example record. Default ``"classification"``; a task whose costs
        the meta-gradient engines cannot weigh refuses the meta methods here.
    autocast_dtype : torch.dtype or None
        Run every training step (forward and backward) under :func:`torch.autocast` with this
        dtype (e.g. ``torch.bfloat16``, ``precision: bf16``). The meta-gradient switches it off
        (:func:`l2b.meta.without_autocast`), so the weights are those of the float32 step; the
        engines whose real forward is shared with it (fused, tail, head) keep that forward in float32
        too. Evaluation, the epoch-start passes and checkpoints stay in float32.
    dist : l2b.distributed.DistContext or None
        Data parallelism over ``dist.world_size`` processes (launched by torchrun). Every process
        holds the whole data set and draws the same plan from the same `generator`; each takes
        its contiguous shard of every noisy and meta batch, so `batch_size` and
        `meta_batch_size` are global. The real step runs through DistributedDataParallel, the
        meta-gradient on the unwrapped model with global reductions: the weights and updates equal
        one process on the whole batch (for models without BatchNorm; with BatchNorm each process
        normalises with its shard's statistics, as DDP does). Augmentation is drawn for the
        whole batch, so it is the same as in one process. Per-example statistics are gathered to
        every process; epoch records and the meta set chosen by `meta_selector` come from rank 0.

    Notes
    -----
    The method's hooks (:meth:`l2b.methods.Method.start_epoch`, ``state_dict``) are called for
    every method alike: before an epoch's first step, and with every checkpoint.
    """

    def __init__(
        self,
        model: nn.Module,
        method: Method,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        *,
        num_classes: int,
        batch_size: int,
        meta_batch_size: int,
        warmup_epochs: int = 0,
        generator: torch.Generator,
        progress: bool = True,
        callbacks: tuple[Callable[[dict[str, Any]], None], ...] = (),
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
        meta_selector: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        augment: Callable[..., Tensor] | None = None,
        max_bad_steps: int = 10,
        log: Callable[[str], None] | None = None,
        dist: DistContext | None = None,
        test_every: int = 1,
        autocast_dtype: torch.dtype | None = None,
        task: Task | str = "classification",
        strong_augment: Callable[..., Tensor] | None = None,
    ):
        self.model, self.method, self.optimizer, self.scheduler = model, method, optimizer, scheduler
        self.task = get_task(task)
        if (method.needs_meta or method.uses_engine or meta_selector is not None) and not self.task.meta_gradient:
            raise ValueError(
                f"method {method.name!r} weighs one cost per example by its meta-gradient, which task "
                f"{self.task.name!r} (labels of another shape) does not have yet; train it with a method "
                "without a meta set (ce, bootstrap-soft, bootstrap-hard)"
            )
        if getattr(method, "pseudo_views", 1) != 1 and self.task.name != "segmentation":
            raise ValueError(
                f"pseudo_views={method.pseudo_views} is the segmentation variant's five-view pseudo-mask: it "
                f"applies to masks (task 'segmentation'), not to task {self.task.name!r}"
            )
        self.autocast_dtype = autocast_dtype
        self.warmup_method = method.warmup_method()
        self.num_classes, self.batch_size, self.meta_batch_size = num_classes, batch_size, meta_batch_size
        self.warmup_epochs, self.generator, self.progress = warmup_epochs, generator, progress
        self.callbacks, self.checkpoint, self.meta_selector = callbacks, checkpoint, meta_selector
        self.augment, self.max_bad_steps, self.log = augment, max_bad_steps, log
        self.strong_augment = strong_augment
        self.test_every = test_every
        self.selection: Source | None = None  # set by fit(): held-out trusted examples to select on
        self.target_epochs = 0  # set by fit(): the last epoch always evaluates the test set
        self.dist = dist if dist is not None and dist.world_size > 1 else None
        self.step_model = model if self.dist is None else wrap_ddp(model, self.dist, **method.ddp_options)
        self.shard = None if self.dist is None else (self.dist.rank, self.dist.world_size)
        self.device = next(model.parameters()).device
        self.interrupt_requested = False  # set by the first Ctrl-C / SIGTERM, honoured at the next step boundary
        self.stop_signal = signal.SIGINT  # which of the two it was
        # Progress; everything below is in state_dict().
        self.bad_in_row = 0
        self.meta_index: np.ndarray | None = None  # the selected meta set (meta_selector mode)
        self.epoch = 0  # completed epochs
        self.history: list[dict[str, Any]] = []
        self.best_key: tuple[float, float] = (-math.inf, -math.inf)  # (meta accuracy, -meta loss)
        self.best_epoch, self.best_state = -1, {}
        self.per_example: PerExample | None = None
        self.cursor: EpochCursor | None = None  # position inside an unfinished epoch
        self.meta_sampler: dict[str, Any] = {"perm": None, "pos": 0}  # reshuffled passes over the meta set

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly from the current step boundary."""
        dev = self.device
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generator": self.generator.get_state(),
            "torch_rng": torch.random.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            "epoch": self.epoch,
            "history": copy.deepcopy(self.history),
            "best_key": list(self.best_key),
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "per_example": self.per_example.state_dict() if self.per_example is not None else None,
            "cursor": None if self.cursor is None else self.cursor.state_dict(),
            "meta_sampler": copy.deepcopy(self.meta_sampler),
            "meta_index": None if self.meta_index is None else torch.from_numpy(self.meta_index.copy()),
            "bad_in_row": self.bad_in_row,
            "method": self.method.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.device
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.random.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and dev.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.best_key, self.best_epoch = tuple(state["best_key"]), int(state["best_epoch"])
        self.best_state = state["best_state"]
        if state["per_example"] is not None:
            self.per_example = PerExample(len(state["per_example"]["alpha"]))
            self.per_example.load_state_dict(state["per_example"])
        self.cursor = None if state["cursor"] is None else EpochCursor.from_state(state["cursor"])
        self.meta_sampler = state["meta_sampler"]
        self.meta_index = None if state.get("meta_index") is None else state["meta_index"].numpy().copy()
        self.bad_in_row = int(state.get("bad_in_row", 0))
        self.method.load_state_dict(state.get("method") or {})

    @contextlib.contextmanager
    def _deferred_interrupt(self):
        """Turn the first Ctrl-C or SIGTERM into a request honoured at the next step boundary, so
        the checkpoint written on interrupt is consistent; a second one interrupts at once."""
        self.interrupt_requested = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.interrupt_requested:
                raise Interrupted(signum)
            self.interrupt_requested, self.stop_signal = True, signum

        previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for s, old in previous.items():
                signal.signal(s, signal.SIG_DFL if old is None else old)  # None: set outside Python

    # -- the loop ------------------------------------------------------------------------------
    def fit(
        self,
        train: Source,
        meta: Source | None,
        *,
        epochs: int,
        test: Source | None = None,
        clean_labels: np.ndarray | None = None,
        selection: Source | None = None,
    ) -> FitResult:
        """Train until `epochs` epochs are complete (continuing from a loaded state, if any);
        select the best epoch on the clean meta set, or on `selection` when given.

        Parameters
        ----------
        train : Source
            The noisy training set.
        meta : Source or None
            The clean meta set (needed by meta methods and used for model selection by every
            method unless `selection` is given).
        epochs : int
            The total number of epochs, counting those of a loaded state.
        test : Source or None
            Evaluated for the record only (see `test_every`); nothing is selected on it.
        clean_labels : ndarray of shape (N,) or None
            True training labels, when known, for diagnostics (weights on truly clean vs noisy
            examples); None when nobody knows them.
        selection : Source or None
            Trusted examples held out of the meta set, so that the checkpoint is not chosen on
            the examples the weights were fitted to (recorded as ``selection_accuracy`` /
            ``selection_loss``).
        """
        self.selection = selection if selection is not None and len(selection) > 0 else None
        if self.meta_selector is not None and meta is not None:
            raise ValueError("pass either a meta set or a meta_selector, not both")
        if self.method.needs_meta and (meta is None or len(meta) == 0) and self.meta_selector is None:
            raise ValueError(f"method {self.method.name!r} needs a clean meta set (num_meta > 0)")
        meta = meta if meta is not None and len(meta) > 0 else None
        self.target_epochs = epochs
        if self.per_example is None:
            self.per_example = PerExample(len(train), self.task.label_shape(train.labels))
        noisy_mask = None if clean_labels is None else clean_labels != train.labels.cpu().numpy()
        started = time.perf_counter()
        bar = tqdm(
            total=epochs,
            initial=self.epoch,
            desc=self.method.name,
            unit="epoch",
            disable=not self.progress,
            leave=False,
        )
        with self._deferred_interrupt():
            try:
                while self.epoch < epochs:
                    record = self._run_epoch(train, meta, test, noisy_mask, clean_labels)
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{record['train_loss']:.3f}",
                        meta=record.get(f"meta_{self.task.selection_metric}"),
                        test=record.get("test_accuracy"),
                    )
                    for cb in self.callbacks:
                        cb(record)
                    if self.checkpoint is not None:
                        self.checkpoint(self.state_dict())
            except GracefulStop:
                if self.checkpoint is not None:
                    self.checkpoint(self.state_dict())  # the cursor holds the position inside the epoch
                raise
            finally:
                bar.close()
        if self.best_epoch < 0:  # no meta set: the last epoch is the only principled choice
            self.best_epoch, self.best_state = self.epoch, _cpu_state(self.model)
        return FitResult(
            self.history, self.best_epoch, self.best_state, self.per_example, time.perf_counter() - started
        )

    def _run_epoch(
        self,
        train: Source,
        meta: Source | None,
        test: Source | None,
        noisy_mask: np.ndarray | None,
        clean_labels: np.ndarray | None,
    ) -> dict[str, Any]:
        """One epoch from wherever the cursor stands: start it (unless resumed), step through its
        batches, then evaluate, select and record it."""
        warm = self.epoch < self.warmup_epochs
        method = self.warmup_method if warm else self.method
        if self.cursor is None:  # a resumed epoch keeps its cursor, meta set and statistics
            self._start_epoch(train, meta, method, warm)
        meta = self._epoch_meta_set(train, meta, warm)
        cursor = self.cursor
        batches = train.batches(
            cursor,
            meta if method.needs_meta else None,
            generator=self.generator,
            next_meta=self._meta_draw(meta, method),
            augment=self.augment,
            shard=self.shard,
            device=self.device,
            views=method.views,
            strong=self.strong_augment,
        )
        bar = tqdm(
            total=cursor.n_batches,
            initial=cursor.step,
            desc=f"epoch {self.epoch + 1}",
            unit="step",
            leave=False,
            disable=not self.progress,
            mininterval=0.5,
        )
        try:
            t0 = time.perf_counter()  # each step's time includes fetching its batch
            for batch in batches:
                out = self._step(method, batch)
                self._account(batch, out, time.perf_counter() - t0)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{np.mean(cursor.losses) if cursor.losses else math.nan:.3f}",
                    img_s=f"{cursor.step * self.batch_size / max(cursor.seconds, 1e-9):.0f}",
                    refresh=False,
                )
                if self._stop_requested():  # Ctrl-C / SIGTERM arrived during the step: stop at its boundary
                    raise GracefulStop(self.stop_signal)
                t0 = time.perf_counter()
        finally:
            bar.close()
            batches.close()  # a streamed source stops its DataLoader workers
        return self._end_epoch(train, meta, test, noisy_mask, clean_labels, warm)

    # -- the parts of an epoch, in the order they run -------------------------------------------
    def _start_epoch(self, train: Source, meta: Source | None, method: Method, warm: bool) -> None:
        """Choose the meta set (meta_selector mode), run the method's epoch hook, plan the epoch."""
        if self.meta_selector is not None and not warm:
            given = train.labels.cpu().numpy()
            if self.dist is None or self.dist.is_main:
                self.meta_index = self.meta_selector(predict_proba(self.model, train).cpu().numpy(), given)
            if self.dist is not None:  # one choice for every process, whatever their float noise
                self.meta_index = broadcast_object(self.meta_index)
            self.meta_sampler = {"perm": None, "pos": 0}
        stats = method.start_epoch(self.model, train, epoch=self.epoch, device=self.device)
        n_batches = batches_per_epoch(len(train), self.batch_size)
        self.cursor = EpochCursor(
            perm=torch.randperm(len(train), generator=self.generator), n_batches=n_batches, stats=dict(stats)
        )
        train.plan_epoch(
            self.cursor,
            generator=self.generator,
            next_meta=self._meta_draw(self._epoch_meta_set(train, meta, warm), method),
        )
        self.per_example.start_epoch()

    def _epoch_meta_set(self, train: Source, meta: Source | None, warm: bool) -> Source | None:
        """The clean meta set, or after warm-up the one `meta_selector` chose from the training set."""
        if self.meta_index is not None and not warm:
            return train.subset(self.meta_index)
        return meta

    def _meta_draw(self, meta: Source | None, method: Method) -> Callable[[], Tensor] | None:
        """What draws the next meta batch's rows, for methods that take meta batches."""
        if meta is None or not method.needs_meta:
            return None
        return lambda: self._next_meta(len(meta))

    def _next_meta(self, n_meta: int) -> Tensor:
        """The next meta batch's rows, from reshuffled passes over the meta set."""
        s = self.meta_sampler
        if s["perm"] is None or s["pos"] >= n_meta:
            s["perm"], s["pos"] = torch.randperm(n_meta, generator=self.generator), 0
        chunk = s["perm"][s["pos"] : s["pos"] + self.meta_batch_size]
        s["pos"] += self.meta_batch_size
        if len(chunk) < 2 <= n_meta:  # a 1-example tail would break BatchNorm: start a new pass
            s["pos"] = n_meta
            return self._next_meta(n_meta)
        return chunk

    def _step(self, method: Method, batch: Batch) -> StepOutput:
        """The method's step; one whose gradient is not finite is undone and counted instead."""
        buffers = {k: b.clone() for k, b in self.model.named_buffers()}
        try:
            on = self.autocast_dtype is not None
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=on):
                out = method.step(self.step_model, self.optimizer, batch, self._context())
        except NonFiniteStep:
            out = self._skip_step(buffers, self.cursor.step)
            self.cursor.skipped += 1
        else:
            self.bad_in_row = 0
        if self.scheduler is not None:
            self.scheduler.step()
        return out

    def _context(self) -> StepContext:
        """The step's context: classes, generator, collective, and how far training has come."""
        c = self.cursor
        n = int(c.perm.shape[0])
        q, r = divmod(n, c.n_batches)  # torch.tensor_split's batches: the first r have q + 1 rows
        return StepContext(
            num_classes=self.num_classes,
            generator=self.generator,
            dist=self.dist,
            epoch=self.epoch,
            first_epoch=self.warmup_epochs,
            examples_done=c.step * q + min(c.step, r),
            epoch_examples=n,
        )

    def _skip_step(self, buffers: dict[str, Tensor], step: int) -> StepOutput:
        """Undo what the refused step changed (BatchNorm statistics, gradients) and count it."""
        with torch.no_grad():
            for k, b in self.model.named_buffers():
                b.copy_(buffers[k])
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_in_row += 1
        where = f"epoch {self.epoch + 1}, step {step + 1}"
        if self.log is not None:
            self.log(
                f"warning: {where}: non-finite loss or gradient, step skipped "
                f"({self.bad_in_row} in a row, at most {self.max_bad_steps})"
            )
        if self.bad_in_row >= self.max_bad_steps:
            raise TrainingDiverged(
                f"training stopped at {where}: {self.bad_in_row} consecutive steps had a non-finite loss, "
                "meta-gradient or gradient (max_bad_steps); lower the learning rate, clip gradients "
                "(clip_grad) or check the data for NaN / Inf values"
            )
        return StepOutput(loss=float("nan"))

    def _account(self, batch: Batch, out: StepOutput, seconds: float) -> None:
        """Add one finished step to the cursor and the per-example statistics."""
        c = self.cursor
        if math.isfinite(out.loss):
            c.losses.append(out.loss)
        c.zero_steps += int(out.stats.get("all_zero", 0))
        if "meta_loss" in out.stats:
            c.meta_losses.append(out.stats["meta_loss"])
        self.per_example.record(
            batch.index.numpy(), out if self.dist is None else self._gathered(out), reduce=self.task.reduce
        )
        c.step += 1
        c.seconds += seconds

    def _gathered(self, out: StepOutput) -> StepOutput:
        """Every process's per-example weights and pseudo-labels, in global batch order."""
        return StepOutput(
            loss=out.loss,
            stats=out.stats,
            alpha=None if out.alpha is None else gather_cat(out.alpha),
            beta=None if out.beta is None else gather_cat(out.beta),
            pseudo_labels=None if out.pseudo_labels is None else gather_cat(out.pseudo_labels),
            predictions=None if out.predictions is None else gather_cat(out.predictions),
        )

    def _scores(self, data: Source, prefix: str, loss_key: str) -> dict[str, float]:
        """The task's eval-mode figures of the model on `data` as record keys: ``<prefix>_<name>``
        for each (``meta_accuracy``; ``meta_dice`` for segmentation), the loss under `loss_key`."""
        scores = self.task.scores(predict_proba(self.model, data), data.labels)
        out = {f"{prefix}_{name}": value for name, value in scores.items() if name != "loss"}
        out[loss_key] = scores["loss"]
        return out

    def _stop_requested(self) -> bool:
        """Ctrl-C seen by any process stops all of them at the same step boundary."""
        if self.dist is None:
            return self.interrupt_requested
        flag = torch.tensor([float(self.interrupt_requested)], device=self.dist.device)
        return bool(self.dist.sum(flag).item() > 0)

    def _fit_to_labels(
        self, train: Source, noisy_mask: np.ndarray | None, clean_labels: np.ndarray | None
    ) -> dict[str, Any]:
        """How the model fits the given labels: ``train_accuracy`` on them and, when the truth is
        known, the share of mislabelled examples predicted as their wrong given label
        (``memorised``) and as their true class (``noisy_correct``).

        Measured on the predictions each example's own step made this epoch (train mode, before
        the update, augmented as trained): no extra pass. Where the steps report none (mixed
        inputs), one eval-mode pass over the training set after the epoch is used instead, and
        ``fit_measured`` says which.
        """
        given = train.labels.cpu().numpy()
        pred, source = self.per_example.pred, "steps"
        if (pred < 0).any():
            pred, source = self.task.predictions(predict_proba(self.model, train)).cpu().numpy(), "eval pass"
        agree = self.task.agreement
        out: dict[str, Any] = {"train_accuracy": float(np.mean(agree(pred, given))), "fit_measured": source}
        if noisy_mask is not None and noisy_mask.any():
            out["memorised"] = float(np.mean(agree(pred[noisy_mask], given[noisy_mask])))
            out["noisy_correct"] = float(np.mean(agree(pred[noisy_mask], clean_labels[noisy_mask])))
        return out

    def _end_epoch(
        self,
        train: Source,
        meta: Source | None,
        test: Source | None,
        noisy_mask: np.ndarray | None,
        clean_labels: np.ndarray | None,
        warm: bool,
    ) -> dict[str, Any]:
        """Close the epoch: its record (losses, speed, meta and test figures, diagnostics) and
        the best-epoch selection on the clean meta set."""
        c, pe = self.cursor, self.per_example
        pe.close_epoch()
        self.epoch += 1
        record: dict[str, Any] = {
            "epoch": self.epoch,
            "phase": "warmup" if warm else self.method.name,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": float(np.mean(c.losses)) if c.losses else math.nan,
            "train_seconds": round(c.seconds, 4),
            "images_per_second": round(len(train) / max(c.seconds, 1e-9), 1),
        }
        if c.skipped:
            record["skipped_steps"] = c.skipped
        if c.meta_losses:
            record["meta_loss"] = float(np.mean(c.meta_losses))
            record["zero_weight_steps"] = c.zero_steps
        record.update(c.stats)
        if self.meta_index is not None and not warm:  # a chosen meta set is no clean data to select on
            record["meta_size"] = len(meta)
            if clean_labels is not None:  # how clean the pseudo-clean meta set really is
                given = train.labels.cpu().numpy()[self.meta_index]
                record["meta_purity"] = float(np.mean(clean_labels[self.meta_index] == given))
        elif meta is not None:
            record.update(self._scores(meta, "meta", "meta_eval_loss"))
        if self.selection is not None:
            record.update(self._scores(self.selection, "selection", "selection_loss"))
        key = _selection_key(record, self.task.selection_metric)
        # The test set is for the record only, so it may be thinned out (its pass can cost more
        # than the epoch's training); the last epoch and every new best one are always evaluated.
        if test is not None and (
            self.epoch % self.test_every == 0
            or self.epoch >= self.target_epochs
            or (key is not None and key > self.best_key)
        ):
            started = time.perf_counter()
            record.update(self._scores(test, "test", "test_loss"))
            record["test_seconds"] = round(time.perf_counter() - started, 4)  # not the epoch's training
        record.update(self._fit_to_labels(train, noisy_mask, clean_labels))
        record.update(_diagnostics(pe, noisy_mask, clean_labels))
        if self.dist is not None:  # rank 0's figures decide the best epoch everywhere
            record = broadcast_object(record)
        key = _selection_key(record, self.task.selection_metric)
        if key is not None:
            if key > self.best_key:
                self.best_key, self.best_epoch, self.best_state = key, self.epoch, _cpu_state(self.model)
        self.cursor = None
        self.history.append(record)
        return record


def _selection_key(record: dict[str, Any], metric: str = "accuracy") -> tuple[float, float] | None:
    """What the best epoch maximises: (the task's selection metric, -loss) on the held-out
    selection set when there is one, else on the meta set; None when neither was evaluated."""
    if f"selection_{metric}" in record:
        return record[f"selection_{metric}"], -record["selection_loss"]
    if f"meta_{metric}" in record:
        return record[f"meta_{metric}"], -record["meta_eval_loss"]
    return None


def _diagnostics(pe: PerExample, noisy_mask: np.ndarray | None, clean: np.ndarray | None) -> dict[str, float]:
    """Mean weights on truly clean vs truly noisy examples, how often the pseudo-label recovers the
    true label where the given one is wrong, and where the weight went (:func:`l2b.reports.training_signal`);
    only when ground truth is known. Per-position labels (masks, `noisy_mask` (N, H, W)): the
    weights' means over images with and without a wrong pixel, the pseudo-labels' accuracy over
    the wrong pixels."""
    if noisy_mask is None or np.all(np.isnan(pe.alpha)):
        return {}
    out = {}
    per_position = noisy_mask.ndim > 1
    images = noisy_mask.reshape(len(noisy_mask), -1).any(1) if per_position else noisy_mask
    for name, arr in (("alpha", pe.alpha), ("beta", pe.beta)):
        for part, mask in (("clean", ~images), ("noisy", images)):
            if mask.any():
                out[f"{name}_{part}"] = float(np.nanmean(arr[mask]))
    if noisy_mask.any() and (pe.pseudo[noisy_mask] >= 0).any():
        out["pseudo_label_accuracy_on_noisy"] = float(np.mean(pe.pseudo[noisy_mask] == clean[noisy_mask]))
    if not per_position:  # its shares are of per-example weights on per-example labels
        out.update(training_signal(pe.alpha, pe.beta, pe.pseudo, noisy_mask, clean))
    return out
