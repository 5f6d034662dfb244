"""The training loop: in-memory tensors, one method step per batch, evaluation every epoch.

The trainer knows nothing about which method it runs: it logs what each step returns.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..methods import Method, create_method


@dataclass
class TensorData:
    """A labelled set held on the training device: inputs (N, ...), labels (N,) int64."""

    inputs: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData, *, batch_size: int = 1024) -> tuple[float, float]:
    """Eval-mode (accuracy, mean cross-entropy) of `model` on `data`; the mode is restored."""
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(data), batch_size):
        logits = model(data.inputs[i:i + batch_size])
        y = data.labels[i:i + batch_size]
        correct += int((logits.argmax(1) == y).sum())
        loss += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
    model.train(was_training)
    return correct / len(data), loss / len(data)


@dataclass
class EpochState:
    """Per-example quantities from the latest epoch, indexed like the training set."""

    alpha: np.ndarray
    beta: np.ndarray
    pseudo_labels: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "EpochState":
        return cls(np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, dtype=np.int64))


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_state: dict[str, Tensor]
    per_example: EpochState
    seconds: float


class Trainer:
    """Train `model` with `method` on in-memory tensors.

    Parameters
    ----------
    model : nn.Module, already on `device`.
    method : Method
        The method after warm-up; warm-up epochs use plain cross-entropy.
    optimizer : torch.optim.Optimizer;  scheduler : stepped once per batch.
    batch_size, meta_batch_size : int
        Every epoch covers every training example once: a random permutation cut into
        ceil(N / batch_size) nearly equal batches (nothing is dropped).
    generator : torch.Generator (CPU)
        All of the trainer's sampling (batches, meta batches, mixup) draws from it.
    callbacks : callables receiving each epoch's record dict.
    """

    def __init__(self, model: nn.Module, method: Method, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, *, num_classes: int,
                 batch_size: int, meta_batch_size: int, warmup_epochs: int = 0,
                 generator: torch.Generator, progress: bool = True,
                 callbacks: tuple[Callable[[dict[str, Any]], None], ...] = ()):
        self.model, self.method, self.optimizer, self.scheduler = model, method, optimizer, scheduler
        self.warmup_method = create_method("ce", mixup=method.mixup, mixup_alpha=method.mixup_alpha,
                                           clip_grad=method.clip_grad)
        self.num_classes, self.batch_size, self.meta_batch_size = num_classes, batch_size, meta_batch_size
        self.warmup_epochs, self.generator, self.progress = warmup_epochs, generator, progress
        self.callbacks = callbacks

    def _batches(self, n: int) -> list[Tensor]:
        perm = torch.randperm(n, generator=self.generator)
        return list(torch.tensor_split(perm, max(1, math.ceil(n / self.batch_size))))

    def _meta_batches(self, n_meta: int):
        """An endless stream of meta-batch indices: reshuffled passes over the meta set."""
        while True:
            perm = torch.randperm(n_meta, generator=self.generator)
            for i in range(0, n_meta, self.meta_batch_size):
                chunk = perm[i:i + self.meta_batch_size]
                if len(chunk) >= 2 or n_meta < 2:
                    yield chunk

    def fit(self, train: TensorData, meta: TensorData | None, *, epochs: int,
            test: TensorData | None = None, clean_labels: np.ndarray | None = None) -> FitResult:
        """Train for `epochs` epochs; select the best epoch on the clean meta set.

        Parameters
        ----------
        train : the noisy training set.  meta : the clean meta set (needed by meta methods and
        used for model selection by every method).  test : evaluated every epoch for the record
        only; nothing is selected on it.  clean_labels : (N,) true training labels, when known,
        for diagnostics (weights on truly clean vs noisy examples).
        """
        if self.method.needs_meta and (meta is None or len(meta) == 0):
            raise ValueError(f"method {self.method.name!r} needs a clean meta set (num_meta > 0)")
        n = len(train)
        noisy_mask = None if clean_labels is None else clean_labels != train.labels.cpu().numpy()
        meta_stream = self._meta_batches(len(meta)) if meta is not None and len(meta) else None
        history: list[dict[str, Any]] = []
        best = (-1.0, math.inf)
        best_epoch, best_state = -1, {}
        state = EpochState.empty(n)
        started = time.perf_counter()
        bar = tqdm(range(epochs), desc=self.method.name, unit="epoch", disable=not self.progress, leave=False)
        for epoch in bar:
            warm = epoch < self.warmup_epochs
            method = self.warmup_method if warm else self.method
            t0 = time.perf_counter()
            state = EpochState.empty(n)
            losses, zero_steps, meta_losses = [], 0, []
            for idx in self._batches(n):
                dev_idx = idx.to(train.inputs.device)
                x, y = train.inputs[dev_idx], train.labels[dev_idx]
                mx = my = None
                if method.needs_meta:
                    m_idx = next(meta_stream).to(meta.inputs.device)
                    mx, my = meta.inputs[m_idx], meta.labels[m_idx]
                out = method.step(self.model, self.optimizer, x, y, mx, my, num_classes=self.num_classes,
                                  generator=self.generator)
                if self.scheduler is not None:
                    self.scheduler.step()
                losses.append(out.loss)
                zero_steps += int(out.stats.get("all_zero", 0))
                if "meta_loss" in out.stats:
                    meta_losses.append(out.stats["meta_loss"])
                np_idx = idx.numpy()
                if out.alpha is not None:
                    # Scaled by the batch size so that uniform weighting reads 1.
                    state.alpha[np_idx] = out.alpha.float().cpu().numpy() * len(idx)
                    state.beta[np_idx] = out.beta.float().cpu().numpy() * len(idx)
                if out.pseudo_labels is not None:
                    state.pseudo_labels[np_idx] = out.pseudo_labels.cpu().numpy()
            train_seconds = time.perf_counter() - t0
            record: dict[str, Any] = {
                "epoch": epoch + 1, "phase": "warmup" if warm else self.method.name,
                "lr": self.optimizer.param_groups[0]["lr"], "train_loss": float(np.mean(losses)),
                "train_seconds": round(train_seconds, 4), "images_per_second": round(n / train_seconds, 1),
            }
            if meta_losses:
                record["meta_loss"] = float(np.mean(meta_losses))
                record["zero_weight_steps"] = zero_steps
            if meta is not None and len(meta):
                record["meta_accuracy"], record["meta_eval_loss"] = evaluate(self.model, meta)
            if test is not None:
                record["test_accuracy"], record["test_loss"] = evaluate(self.model, test)
            record.update(_diagnostics(state, noisy_mask, clean_labels))
            history.append(record)
            if meta is not None and len(meta):
                key = (record["meta_accuracy"], -record["meta_eval_loss"])
                if key > (best[0], -best[1]):
                    best = (record["meta_accuracy"], record["meta_eval_loss"])
                    best_epoch = epoch + 1
                    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", meta=record.get("meta_accuracy"),
                            test=record.get("test_accuracy"))
            for cb in self.callbacks:
                cb(record)
        bar.close()
        if best_epoch < 0:  # no meta set: the last epoch is the only principled choice
            best_epoch = epochs
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        return FitResult(history, best_epoch, best_state, state, time.perf_counter() - started)


def _diagnostics(state: EpochState, noisy_mask: np.ndarray | None, clean: np.ndarray | None) -> dict[str, float]:
    """Mean weights on truly clean vs truly noisy examples, and how often the pseudo-label
    recovers the true label where the given one is wrong (only when ground truth is known)."""
    if noisy_mask is None or np.all(np.isnan(state.alpha)):
        return {}
    out = {}
    for name, arr in (("alpha", state.alpha), ("beta", state.beta)):
        for part, mask in (("clean", ~noisy_mask), ("noisy", noisy_mask)):
            if mask.any():
                out[f"{name}_{part}"] = float(np.nanmean(arr[mask]))
    if noisy_mask.any() and (state.pseudo_labels[noisy_mask] >= 0).any():
        out["pseudo_label_accuracy_on_noisy"] = float(np.mean(state.pseudo_labels[noisy_mask] == clean[noisy_mask]))
    return out
