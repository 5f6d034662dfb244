"""Meta-learned example weights: L2RW (Ren et al. 2018) and L2B (Zhou et al. 2024)."""
from __future__ import annotations

import torch.nn.functional as F

from ..meta import ENGINES, NORMALIZATIONS, meta_weights
from .base import Method, StepOutput, register_method


class _MetaMethod(Method):
    """Weights from :func:`l2b.meta.meta_weights`, then a real step on the weighted costs.

    Options (keyword-only, besides mixup / clip_grad):

    engine : {"forward", "reverse"}
        How the meta-gradient is computed; both give the same weights, forward is cheaper.
    normalize : {"org", "softmax", "sigmoid"};  temperature : float (softmax only).
    """

    needs_meta = True
    rows: str

    def __init__(self, *, engine: str = "forward", normalize: str = "org", temperature: float = 1.0, **common):
        super().__init__(**common)
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.engine, self.normalize, self.temperature = engine, normalize, float(temperature)

    def loss(self, model, optimizer, inputs, targets, meta_inputs, meta_labels):
        mw = meta_weights(model, inputs, targets, meta_inputs, meta_labels, optimizer, method=self.rows,
                          engine=self.engine, normalize=self.normalize, temperature=self.temperature)
        # The real forward: the only one that updates BatchNorm running statistics.
        logits = model(inputs)
        loss = (mw.alpha * F.cross_entropy(logits, targets, reduction="none")).sum()
        if self.rows == "l2b":
            loss = loss + (mw.beta * F.cross_entropy(logits, mw.pseudo_labels, reduction="none")).sum()
        out = StepOutput(loss=0.0, alpha=mw.alpha.detach(), beta=mw.beta.detach(),
                         pseudo_labels=mw.pseudo_labels,
                         stats={"meta_loss": mw.meta_loss, "all_zero": float(mw.all_zero)})
        return loss, out


@register_method("l2rw")
class L2RW(_MetaMethod):
    """Learning to re-weight: one meta-learned weight per example on its observed-label cost."""

    rows = "l2rw"


@register_method("l2b")
class L2B(_MetaMethod):
    """Learning to bootstrap: meta-learned weights on both the observed-label and the
    pseudo-label cost of every example, normalised jointly."""

    rows = "l2b"
