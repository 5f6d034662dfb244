"""Meta-learned example weights: L2RW (Ren et al. 2018) and L2B (Zhou et al. 2024)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..meta import (
    ENGINES,
    NORMALIZATIONS,
    ROWS,
    MetaWeights,
    dual_forward,
    meta_tangents,
    meta_weights,
    scores_from_jvp,
    weights_from_scores,
)
from .base import Method, StepOutput, predicted, register_method, unwrap_model


class _MetaMethod(Method):
    """Weights from the meta-gradient, then a real step on the weighted costs.

    Options (keyword-only, besides mixup / clip_grad):

    engine : {"forward", "fused", "reverse"}
        ``forward`` (default): the forward-mode engine (a dual forward without autograd graph),
        then the ordinary real forward and backward; peak memory stays close to a plain step.
        ``fused``: the dual forward of the noisy batch is also the real step's forward (its primal
        is back-propagated), saving one forward pass (about a tenth of the step) but keeping
        every intermediate tangent alive until the backward: about 3x the peak memory of a plain
        step on PreAct ResNet-18.  ``reverse``: the published double-backward formulation.  All
        three give the same weights and updates.
        Under data parallelism (``step(..., dist=...)``) ``forward`` and ``reverse`` give the
        single-process weights of the concatenated batches; ``fused`` is refused, because its
        real forward would bypass the DistributedDataParallel wrapper's forward (and so its
        gradient synchronisation).
    normalize : {"org", "softmax", "sigmoid"};  temperature : float (softmax only).
    """

    needs_meta = True
    rows: str
    choices = {"engine": ENGINES, "normalize": NORMALIZATIONS}

    def __init__(self, *, engine: str = "forward", normalize: str = "org", temperature: float = 1.0, **common):
        super().__init__(**common)
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.engine, self.normalize, self.temperature = engine, normalize, float(temperature)

    def loss(self, model, optimizer, inputs, targets, meta_inputs, meta_labels, *, dist=None):
        opts = dict(normalize=self.normalize, temperature=self.temperature)
        if dist is not None:
            return self._distributed_loss(model, optimizer, inputs, targets, meta_inputs, meta_labels, dist, opts)
        if self.engine == "fused":
            rows = ROWS[self.rows]
            tangents, meta_loss = meta_tangents(model, meta_inputs, meta_labels, optimizer)
            logits, zdot = dual_forward(model, inputs, tangents, real_step=True)
            raw, pseudo = scores_from_jvp(logits.detach(), zdot, targets, rows=rows)
            mw = weights_from_scores(raw, pseudo, logits, meta_loss, rows=rows, **opts)
        else:
            mw = meta_weights(
                model,
                inputs,
                targets,
                meta_inputs,
                meta_labels,
                optimizer,
                method=self.rows,
                engine=self.engine,
                **opts,
            )
            logits = model(inputs)  # the real forward: the only one that updates BatchNorm statistics
        return self.weighted_loss(logits, targets, mw), StepOutput(
            loss=0.0,
            alpha=mw.alpha.detach(),
            beta=mw.beta.detach(),
            pseudo_labels=mw.pseudo_labels,
            predictions=predicted(logits, targets),
            stats={"meta_loss": mw.meta_loss, "all_zero": float(mw.all_zero)},
        )

    def _distributed_loss(self, model, optimizer, inputs, targets, meta_inputs, meta_labels, dist, opts):
        """Weights on the bare module with global reductions; the real forward through the DDP wrapper.

        The weights sum to one over all replicas, so the single-process loss of the concatenated
        batch is the sum over replicas of each one's weighted sum; DDP divides the summed
        gradients by world_size, hence each replica back-propagates world_size times its part.
        """
        if self.engine == "fused":
            raise ValueError(
                "engine='fused' is not supported under data parallelism: its real forward is the "
                "dual forward of the bare module, which bypasses DistributedDataParallel's forward "
                "and gradient synchronisation; use engine='forward' (same weights and update)"
            )
        net = unwrap_model(model)
        if dist.world_size > 1 and any(isinstance(m, nn.SyncBatchNorm) for m in net.modules()):
            raise ValueError(
                f"method {self.name!r} cannot differentiate through torch.nn.SyncBatchNorm: it has no "
                "forward-mode derivative and no double backward, which the meta-gradient needs; keep "
                "per-replica BatchNorm for meta methods (SyncBatchNorm works with ce / bootstrap)"
            )
        mw = meta_weights(
            net,
            inputs,
            targets,
            meta_inputs,
            meta_labels,
            optimizer,
            method=self.rows,
            engine=self.engine,
            collective=dist,
            **opts,
        )
        logits = model(inputs)  # through the wrapper: the only forward that updates BatchNorm statistics
        loss = self.weighted_loss(logits, targets, mw) * dist.world_size
        return loss, StepOutput(
            loss=0.0,
            alpha=mw.alpha.detach(),
            beta=mw.beta.detach(),
            pseudo_labels=mw.pseudo_labels,
            predictions=predicted(logits, targets),
            stats={"meta_loss": mw.meta_loss, "all_zero": float(mw.all_zero)},
        )

    def weighted_loss(self, logits: Tensor, targets: Tensor, mw: MetaWeights) -> Tensor:
        """sum_i alpha_i CE(z_i, y_i) + beta_i CE(z_i, pseudo_i): the weights already sum to one."""
        loss = (mw.alpha * F.cross_entropy(logits, targets, reduction="none")).sum()
        if self.rows == "l2b":
            loss = loss + (mw.beta * F.cross_entropy(logits, mw.pseudo_labels, reduction="none")).sum()
        return loss


@register_method("l2rw")
class L2RW(_MetaMethod):
    """Learning to re-weight: one meta-learned weight per example on its observed-label cost."""

    rows = "l2rw"


@register_method("l2b")
class L2B(_MetaMethod):
    """Learning to bootstrap: meta-learned weights on both the observed-label and the
    pseudo-label cost of every example, normalised jointly."""

    rows = "l2b"
