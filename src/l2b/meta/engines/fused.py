"""``fused``: the forward engine whose dual forward is also the real step's forward.

The same weights as ``forward`` (its stand-alone form is ``forward``'s); inside a step the primal
of the dual forward is back-propagated, saving one forward pass (about a tenth of the step) but
keeping every intermediate tangent alive until the backward: about 3x the peak memory of a plain
step on PreAct ResNet-18. Not under data parallelism: its real forward would bypass the
DistributedDataParallel wrapper's forward and gradient synchronisation.
"""

from __future__ import annotations

from ..engine import ROWS, dual_forward, meta_tangents, scores_from_jvp, weights_from_scores, without_autocast
from . import register_engine
from .forward import ForwardEngine


def real_step_weights(engine, net, *, inputs, targets, meta_inputs, meta_labels, optimizer, method, normalize,
                      temperature, params=None):  # fmt: skip
    """(logits of the real forward, weights): tangents over `params` (None: every parameter), then
    the dual forward of `net` as the real step's forward. In float32 whatever the autocast: the
    weights must not change with the step's precision."""
    rows = ROWS[method]
    with without_autocast(inputs):
        tangents, meta_loss = meta_tangents(net, meta_inputs, meta_labels, optimizer, params=params)
        logits, zdot = dual_forward(net, inputs, tangents, real_step=True)
        raw, pseudo = scores_from_jvp(logits.detach(), zdot, targets, rows=rows)
        mw = weights_from_scores(
            raw, pseudo, logits, meta_loss, rows=rows, normalize=normalize, temperature=temperature
        )
    return logits, mw


@register_engine("fused")
class FusedEngine(ForwardEngine):
    """``forward``'s weights, its dual forward shared with the real step."""

    def step(self, net, forward, *, inputs, targets, meta_inputs, meta_labels, optimizer, method, collective=None,
             normalize="org", temperature=1.0):  # fmt: skip
        if collective is not None:
            raise ValueError(
                "engine='fused' is not supported under data parallelism: its real forward is the "
                "dual forward of the bare module, which bypasses DistributedDataParallel's forward "
                "and gradient synchronisation; use engine='forward' (same weights and update)"
            )
        return real_step_weights(
            self, net, inputs=inputs, targets=targets, meta_inputs=meta_inputs, meta_labels=meta_labels,
            optimizer=optimizer, method=method, normalize=normalize, temperature=temperature,
        )  # fmt: skip
