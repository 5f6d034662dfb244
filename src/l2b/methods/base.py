"""The training-step protocol shared by every method, the method registry, and mixup.

A method turns one noisy batch (and, for meta methods, one clean meta batch) into one optimizer
step and returns a :class:`StepOutput` the trainer logs without knowing which method made it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

_REGISTRY: dict[str, type["Method"]] = {}


def register_method(name: str) -> Callable[[type["Method"]], type["Method"]]:
    """Class decorator adding a :class:`Method` subclass to the registry under `name`."""
    def add(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return add


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def create_method(name: str, **options) -> "Method":
    """Build a registered method; options are its keyword-only constructor arguments."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(list_methods())}")
    return _REGISTRY[name](**options)


@dataclass
class StepOutput:
    """What one training step reports (all tensors detached).

    Attributes
    ----------
    loss : float
        The loss that was back-propagated.
    alpha, beta : Tensor of shape (B,) or None
        Per-example weights of the observed-label and pseudo-label costs, when the method has them.
    pseudo_labels : Tensor of shape (B,) or None
    stats : dict[str, float]
        Method-specific scalars (meta loss, whether all weights were zero, gradient norm ...).
    """

    loss: float
    alpha: Tensor | None = None
    beta: Tensor | None = None
    pseudo_labels: Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)


def mixup(inputs: Tensor, labels: Tensor, num_classes: int, *, alpha: float,
          generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Mix each example with one random partner (one permutation, one lambda for the batch).

    Parameters
    ----------
    inputs : Tensor, shape (B, ...)
    labels : Tensor, shape (B,) int64
    alpha : float
        lambda ~ Beta(alpha, alpha); the paper uses 32, so lambda stays close to 0.5.

    Returns
    -------
    mixed inputs (B, ...) and probability targets (B, K).
    """
    # torch's Beta sampler only draws from the global RNG; numpy's takes a seed we derive from
    # the caller's (CPU) generator, so runs are reproducible and global state is left alone.
    seed = int(torch.randint(2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(inputs.shape[0], generator=generator).to(inputs.device)
    onehot = F.one_hot(labels, num_classes).to(inputs.dtype)
    return lam * inputs + (1 - lam) * inputs[perm], lam * onehot + (1 - lam) * onehot[perm]


class Method:
    """Base class: one optimizer step on one batch.

    Subclasses implement :meth:`loss`. Options shared by every method (keyword-only):

    mixup : bool
        Train on mixed-up inputs with probability targets (the meta batch is never mixed).
    mixup_alpha : float
        Beta(mixup_alpha, mixup_alpha) mixing coefficient.
    clip_grad : float or None
        Clip the gradient's global 2-norm to this value before the step.
    """

    name: str = "?"
    needs_meta: bool = False

    def __init__(self, *, mixup: bool = False, mixup_alpha: float = 32.0, clip_grad: float | None = None):
        if mixup_alpha <= 0:
            raise ValueError(f"mixup_alpha must be positive, got {mixup_alpha}")
        if clip_grad is not None and clip_grad <= 0:
            raise ValueError(f"clip_grad must be positive or None, got {clip_grad}")
        self.mixup = mixup
        self.mixup_alpha = mixup_alpha
        self.clip_grad = clip_grad

    def loss(self, model: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor, targets: Tensor,
             meta_inputs: Tensor | None, meta_labels: Tensor | None) -> tuple[Tensor, StepOutput]:
        """Return the scalar loss to back-propagate and the step's report (loss filled in later).

        `targets` are class indices (B,) or, under mixup, probability targets (B, K).
        """
        raise NotImplementedError

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor, labels: Tensor,
             meta_inputs: Tensor | None = None, meta_labels: Tensor | None = None, *,
             num_classes: int, generator: torch.Generator | None = None) -> StepOutput:
        """One training step: (mixup), loss, backward, (clip), optimizer step.

        Parameters
        ----------
        inputs : Tensor, shape (B, ...);  labels : Tensor, shape (B,) int64, the observed labels.
        meta_inputs : Tensor, shape (M, ...);  meta_labels : Tensor, shape (M,), for meta methods.
        """
        if self.needs_meta and (meta_inputs is None or meta_labels is None):
            raise ValueError(f"method {self.name!r} needs a clean meta batch")
        model.train()
        targets: Tensor = labels
        if self.mixup:
            inputs, targets = mixup(inputs, labels, num_classes, alpha=self.mixup_alpha, generator=generator)
        loss, out = self.loss(model, optimizer, inputs, targets, meta_inputs, meta_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad is not None:
            out.stats["grad_norm"] = float(nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad))
        optimizer.step()
        out.loss = float(loss.detach())
        return out
