"""The optimisation settings every training entry point shares, checked in one place, and the
optimizer and schedule they describe."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

__all__ = ["Optimization", "batches_per_epoch", "check_warmup", "default_warmup", "sgd_with_cosine"]


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@dataclass(frozen=True)
class Optimization:
    """How a network is optimised: SGD(lr, momentum, weight_decay, nesterov) with a cosine
    schedule from `lr` to 0 over every step of `epochs` epochs, the first `warmup_epochs` of them
    with plain cross-entropy (unset: :func:`default_warmup`, an eighth of the epochs, so that a
    short run is never all warm-up); `batch_size` noisy and `meta_batch_size` clean examples per step;
    a run stops after `max_bad_steps` consecutive steps with a non-finite gradient.

    ``l2b train`` (:class:`~l2b.training.TrainConfig`), :func:`l2b.fit` and
    :class:`l2b.sklearn.L2BClassifier` all build one, so the same values are accepted and refused
    everywhere. Raises ValueError naming the field and the value.
    """

    epochs: int = 40
    warmup_epochs: int | None = None
    batch_size: int = 64
    meta_batch_size: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    max_bad_steps: int = 10

    def __post_init__(self) -> None:
        if self.warmup_epochs is None and _is_int(self.epochs):
            object.__setattr__(self, "warmup_epochs", default_warmup(int(self.epochs)))
        checks = [
            ("epochs", _is_int(self.epochs) and self.epochs >= 1, "must be at least 1"),
            (
                "warmup_epochs",
                _is_int(self.warmup_epochs) and 0 <= self.warmup_epochs <= self.epochs,
                f"must be in [0, epochs={self.epochs}]",
            ),
            (
                "batch_size",
                _is_int(self.batch_size) and self.batch_size >= 2,
                "must be at least 2 (BatchNorm needs two examples)",
            ),
            ("meta_batch_size", _is_int(self.meta_batch_size) and self.meta_batch_size >= 2, "must be at least 2"),
            ("lr", _is_real(self.lr) and math.isfinite(self.lr) and self.lr > 0, "must be positive and finite"),
            ("momentum", _is_real(self.momentum) and 0.0 <= self.momentum < 1.0, "must be in [0, 1)"),
            (
                "weight_decay",
                _is_real(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                "must be non-negative and finite",
            ),
            ("nesterov", isinstance(self.nesterov, (bool, np.bool_)), "must be true or false"),
            ("max_bad_steps", _is_int(self.max_bad_steps) and self.max_bad_steps >= 1, "must be at least 1"),
        ]
        for key, ok, why in checks:
            if not ok:
                raise ValueError(f"{key}={getattr(self, key)!r} {why}")
        for f in fields(self):  # plain Python numbers from here on (numpy scalars are accepted)
            value = getattr(self, f.name)
            object.__setattr__(
                self, f.name, bool(value) if f.type == "bool" else int(value) if "int" in f.type else float(value)
            )

    def replace(self, **changes: Any) -> Optimization:
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def optimizer(
        self, params, *, num_examples: int
    ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
        """SGD over `params` and its cosine schedule, for epochs of `num_examples` examples."""
        return sgd_with_cosine(
            params,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
            epochs=self.epochs,
            num_examples=num_examples,
            batch_size=self.batch_size,
        )


def default_warmup(epochs: int) -> int:
    """The warm-up when none is given: an eighth of the epochs, rounded half up (5 of the default
    40; 1 of 5; none of 3). A fixed count would turn a short run into plain cross-entropy."""
    return (int(epochs) + 4) // 8  # floor(epochs / 8 + 1/2), exact for any int (no float overflow)


def check_warmup(method: str, optim: Optimization) -> None:
    """Refuse a run whose warm-up leaves no epoch for its method: it would train plain
    cross-entropy and record it under the method's name."""
    if method != "ce" and optim.warmup_epochs >= optim.epochs:
        raise ValueError(
            f"warmup_epochs={optim.warmup_epochs} leaves none of the {optim.epochs} epochs for method {method!r} "
            "(warm-up is plain cross-entropy); lower warmup_epochs or raise epochs"
        )


def batches_per_epoch(num_examples: int, batch_size: int) -> int:
    """How many nearly equal batches the trainer cuts an epoch of `num_examples` into."""
    return max(1, math.ceil(num_examples / batch_size))


def sgd_with_cosine(
    params,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    epochs: int,
    num_examples: int,
    batch_size: int,
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """SGD and a cosine schedule stepped once per batch, annealed to zero over the whole run."""
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    steps = epochs * batches_per_epoch(num_examples, batch_size)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
