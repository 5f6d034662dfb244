"""Methods without a meta set: plain cross-entropy and Reed et al.'s bootstrapping."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import Option
from .base import Method, StepOutput, batch_mean, predicted, register_method


def _as_probs(targets: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """Class indices (B, ...) or probabilities (B, K, ...) -> probabilities (B, K, ...)."""
    if not targets.is_floating_point():
        return F.one_hot(targets, num_classes).movedim(-1, 1).to(dtype)
    return targets.to(dtype)


@register_method("ce")
class CrossEntropy(Method):
    """Plain (empirical risk) cross-entropy on the observed labels."""

    def loss(self, model, optimizer, inputs, targets, batch, ctx):
        logits = model(inputs)
        out = StepOutput(loss=0.0, predictions=predicted(logits, targets))
        if ctx.dist is None:
            return F.cross_entropy(logits, targets), out
        return batch_mean(F.cross_entropy(logits, targets, reduction="none"), ctx.dist), out


class _Bootstrap(Method):
    """Reed et al. (2015): the target is beta * observed + (1 - beta) * the model's own prediction.

    Parameters
    ----------
    beta : float in [0, 1]
        Weight of the observed label (Reed et al.: 0.95 soft, 0.8 hard).
    """

    default_beta: float

    def __init__(self, *, beta: float | None = None, **common):
        super().__init__(**common)
        beta = self.default_beta if beta is None else float(beta)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"bootstrap beta must be in [0, 1], got {beta}")
        self.beta = beta

    def prediction_target(self, probs: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, model: nn.Module, optimizer, inputs, targets, batch, ctx):
        logits = model(inputs)
        log_q = F.log_softmax(logits, dim=1)
        observed = _as_probs(targets, logits.shape[1], logits.dtype)
        target = self.beta * observed + (1.0 - self.beta) * self.prediction_target(log_q.exp())
        return batch_mean(-(target * log_q).sum(dim=1), ctx.dist), StepOutput(
            loss=0.0, predictions=predicted(logits, targets)
        )


@register_method("bootstrap-soft")
class SoftBootstrap(_Bootstrap):
    """Soft bootstrapping: the prediction term is q itself, not detached, which makes it
    cross-entropy plus (1 - beta) times an entropy-minimisation term, as in Reed et al."""

    default_beta = 0.95
    options = (
        Option(
            "beta",
            "float",
            0.95,
            "weight of the observed label in the bootstrap target (Reed et al.: 0.95 soft, 0.8 hard)",
            minimum=0,
            maximum=1,
            key="bootstrap_beta",
        ),
    )

    def prediction_target(self, probs: Tensor) -> Tensor:
        return probs


@register_method("bootstrap-hard")
class HardBootstrap(_Bootstrap):
    """Hard bootstrapping: the prediction term is the one-hot argmax of q (no gradient)."""

    default_beta = 0.8
    options = (
        Option(
            "beta",
            "float",
            0.8,
            "weight of the observed label in the bootstrap target (Reed et al.: 0.95 soft, 0.8 hard)",
            minimum=0,
            maximum=1,
            key="bootstrap_beta",
        ),
    )

    def prediction_target(self, probs: Tensor) -> Tensor:
        return _as_probs(probs.argmax(dim=1), probs.shape[1], probs.dtype)
