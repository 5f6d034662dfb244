"""What one training step is given: the batch and the context.

``Method.step(model, optimizer, batch, ctx)`` takes a :class:`Batch` (the noisy batch, its
positions, the meta batch, the named views the method asked for) and a :class:`StepContext`
(the number of classes, the generator, the collective, how far training has come). The trainer
builds both; a user stepping a method by hand builds them with keywords.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..meta import Collective

__all__ = ["VIEW_KINDS", "Batch", "StepContext"]

VIEW_KINDS = ("weak", "strong")
"""The augmentations a method can ask a view of each noisy example to be drawn with
(``Method.views``), each drawn independently for every view: ``weak``, the run's own
augmentation (random crop and flip of images, the feature noise of feature vectors);
``strong``, random crop and flip then AutoAugment's CIFAR-10 policy
(:class:`l2b.data.autoaugment.StrongAugment`; in-memory images)."""


@dataclass
class Batch:
    """One step's data (this process's shard under data parallelism).

    Attributes
    ----------
    inputs : Tensor, shape (B, ...)
        The noisy batch (the first draw of the run's augmentation, when there is one).
    labels : Tensor
        Its given labels: (B,) int64 class indices for classification.
    index : Tensor, shape (B_global,), or None
        The batch's positions in the training set (the whole global batch under data
        parallelism), for methods that keep per-example state.
    meta_inputs, meta_labels : Tensor (M, ...) and labels of the clean meta batch, or None
        when the method needs none.
    views : dict of str to Tensor
        More views of the noisy batch, each (B, ...), by the names the method declares in
        ``Method.views`` (DivideMix: ``{"second": ...}``); empty otherwise.
    """

    inputs: Tensor
    labels: Tensor
    index: Tensor | None = None
    meta_inputs: Tensor | None = None
    meta_labels: Tensor | None = None
    views: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class StepContext:
    """What a step needs besides its batch.

    Attributes
    ----------
    num_classes : int
        K.
    generator : torch.Generator or None
        All of the step's randomness (mixup, MixMatch) draws from it.
    dist : Collective or None
        Data parallelism (:class:`l2b.distributed.DistContext`); see ``Method.step``.
    epoch : int
        The 0-based epoch the step belongs to.
    first_epoch : int
        The first epoch the method trains (the epoch after the warm-up).
    examples_done, epoch_examples : int
        Training examples stepped earlier in this epoch (all processes together), and in the
        whole epoch.
    """

    num_classes: int
    generator: torch.Generator | None = None
    dist: Collective | None = None
    epoch: int = 0
    first_epoch: int = 0
    examples_done: int = 0
    epoch_examples: int = 0

    @property
    def progress(self) -> float:
        """Epochs of this method's training done before the step, fractional within the epoch
        (what ramp-ups such as DivideMix's lambda_u follow)."""
        return self.epoch - self.first_epoch + self.examples_done / max(self.epoch_examples, 1)
