"""Tasks: what depends on the kind of label.

A :class:`Task` owns everything that differs between, say, classifying images (one class per
example) and segmenting them (one class per pixel): the label-shape checks, the evaluation
metrics and which of them chooses the checkpoint, how a per-position figure (a prediction's
agreement with its label, a weight) reduces to one number per example for the per-example
record, what a label issue is (:meth:`Task.label_quality`), and whether the meta-gradient
engines can weigh its costs. The trainer, the batch
sources and the label-issue reports call the task and assume nothing about label shape beyond
"one row per example".

The registered tasks (:data:`TASKS`): ``classification`` and ``segmentation`` (one class per
pixel, scored by Dice and IoU, the checkpoint chosen on the meta set's Dice).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .registry import Registry

__all__ = ["TASKS", "Classification", "Segmentation", "Task", "get_task"]


class Task:
    """The label-dependent part of training and evaluation. Labels are int64 class indices of
    shape (N, *label_shape); a model's outputs are logits (N, K, *label_shape)."""

    name: ClassVar[str] = "?"
    #: the metric (a key of :meth:`scores`) whose maximum chooses the checkpoint; ties go to the
    #: lower ``loss``
    selection_metric: ClassVar[str] = "accuracy"
    #: whether the meta-gradient engines can weigh this task's costs (one cost per example)
    meta_gradient: ClassVar[bool] = False
    #: the default threshold on :meth:`label_quality` below which an example is flagged
    issue_threshold: ClassVar[float] = 0.5

    def label_shape(self, labels: Tensor | np.ndarray) -> tuple[int, ...]:
        """The shape of one example's label."""
        return tuple(labels.shape[1:])

    def check_labels(self, labels: Tensor | np.ndarray, num_classes: int, *, what: str) -> None:
        """Refuse labels that are not int class indices in [0, K) of this task's shape, naming
        `what` (``"train labels"``) and the offending value."""
        labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"{what} must be integer class indices, got dtype {labels.dtype}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise ValueError(f"{what} must be class indices in [0, {num_classes}), got {bad}")

    def predictions(self, outputs: Tensor) -> Tensor:
        """Predicted labels (N, *label_shape) from logits or probabilities (N, K, *label_shape)."""
        return outputs.argmax(dim=1)

    def agreement(self, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Each example's share of positions predicted as labelled: (N,) in [0, 1]."""
        same = np.asarray(predictions) == np.asarray(labels)
        return same.reshape(len(same), -1).mean(axis=1)

    def label_quality(self, probs: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What a label issue is, from the selected model's probabilities (N, K, *label_shape)
        and the given labels (N, *label_shape): (quality (N,) in [0, 1], the mean probability of
        the given label over the example's positions; the suggested labels (N, *label_shape),
        argmax over the classes; whether any position's suggestion differs from its given
        label (N,) bool). :func:`l2b.reports.label_issues` flags an example whose quality is
        below the threshold and whose suggestion differs."""
        n = len(given)
        picked = np.take_along_axis(probs, np.expand_dims(given, 1), axis=1)[:, 0]
        quality = np.clip(picked.reshape(n, -1).mean(axis=1), 0.0, 1.0)
        suggested = probs.argmax(axis=1).astype(np.int64) if n else np.zeros(given.shape, dtype=np.int64)
        differs = (suggested != given).reshape(n, -1).any(axis=1)
        return quality, suggested, differs

    def reduce(self, values: Tensor) -> Tensor:
        """A per-position figure (B, *label_shape) as one number per example (B,): the mean."""
        return values.reshape(values.shape[0], -1).mean(dim=1) if values.dim() > 1 else values

    @torch.no_grad()
    def scores(self, probs: Tensor, labels: Tensor) -> dict[str, float]:
        """Eval-mode figures from class probabilities (N, K, *label_shape) and labels: ``accuracy``
        (the share of labelled positions predicted right) and ``loss`` (their mean negative
        log-likelihood)."""
        labels = labels.to(probs.device)
        right, total = int((self.predictions(probs) == labels).sum()), labels.numel()
        accuracy = right / total if total else float("nan")  # exact: a float32 mean printed 0.8 as 0.800000011920929
        picked = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        return {"accuracy": accuracy, "loss": float(-torch.log(picked.clamp_min(1e-12)).mean())}


TASKS: Registry[type[Task]] = Registry("task")
"""The registered tasks (:class:`l2b.registry.Registry`)."""


@TASKS.register("classification")
class Classification(Task):
    """One class per example: labels (N,), outputs (N, K). The meta-gradient engines weigh one
    cost per example (and per cost row), so every method applies."""

    name = "classification"
    meta_gradient = True

    def check_labels(self, labels: Tensor | np.ndarray, num_classes: int, *, what: str) -> None:
        if len(labels.shape) != 1:
            raise ValueError(f"{what} must be one class index per example, shape (N,), got shape {tuple(labels.shape)}")
        super().check_labels(labels, num_classes, what=what)


@TASKS.register("segmentation")
class Segmentation(Task):
    """One class per pixel: masks (N, H, W) of class indices (0 = background; binary masks are
    classes 0 and 1), outputs (N, K, H, W). Scored by pixel accuracy, the mean negative
    log-likelihood per pixel, and Dice and IoU per image averaged over the foreground classes and
    the images; the checkpoint is chosen on the meta set's Dice. The meta-gradient engines weigh
    each pixel's two costs (:func:`l2b.meta_weights` with per-pixel labels), so every method
    applies. A label issue is a mask that disagrees with the model's prediction: its quality is
    the given mask's Dice against the predicted one."""

    name = "segmentation"
    selection_metric = "dice"
    meta_gradient = True
    issue_threshold = 0.8  # a mask's Dice against the prediction

    def check_labels(self, labels: Tensor | np.ndarray, num_classes: int, *, what: str) -> None:
        if len(labels.shape) != 3:
            raise ValueError(
                f"{what} must be one mask of class indices per image, shape (N, H, W), got shape {tuple(labels.shape)}"
            )
        super().check_labels(labels, num_classes, what=what)

    @torch.no_grad()
    def scores(self, probs: Tensor, labels: Tensor) -> dict[str, float]:
        from .segmentation.metrics import dice_per_image, iou_per_image

        out = super().scores(probs, labels)
        pred, k = self.predictions(probs), probs.shape[1]
        out["dice"] = float(dice_per_image(pred, labels, k).mean()) if len(pred) else float("nan")
        out["iou"] = float(iou_per_image(pred, labels, k).mean()) if len(pred) else float("nan")
        return out

    def label_quality(self, probs: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(each given mask's Dice against the predicted mask (N,), the predicted masks
        (N, H, W), whether any pixel differs (N,))."""
        from .segmentation.metrics import dice_per_image

        suggested = probs.argmax(axis=1).astype(np.int64)
        quality = dice_per_image(given, suggested, probs.shape[1]).mean(1).numpy() if len(given) else np.zeros(0)
        differs = (suggested != given).reshape(len(given), -1).any(axis=1)
        return np.clip(quality, 0.0, 1.0), suggested, differs


def get_task(task: str | Task) -> Task:
    """The task named `task` (or `task` itself)."""
    return task if isinstance(task, Task) else TASKS.get(task)()
