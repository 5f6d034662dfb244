"""``forward``: the exact forward-mode engine (the default).

r[k, i] = <s * g, grad_theta c[k, i]>, with g the meta gradient at theta'(0) and s the virtual
step's scale, computed as (softmax(z_i) - target_k) . zdot_i where zdot is the forward-mode
derivative of the logits along s * g: one backward of the meta batch, one dual forward of the
noisy batch without autograd graph. Peak memory stays close to a plain step.
"""

from __future__ import annotations

from ..engine import check_classes, dual_forward, meta_tangents, scores_from_jvp
from . import Engine, Scores, register_engine


@register_engine("forward")
class ForwardEngine(Engine):
    """The exact forward-mode engine; its in-step form is the default (weights, then the real forward)."""

    def scores(self, model, *, inputs, labels, meta_inputs, meta_labels, optimizer, rows, collective=None,
               bounds=(None, None)) -> Scores:  # fmt: skip
        tangents, meta_loss = meta_tangents(
            model, meta_inputs, meta_labels, optimizer, collective=collective, meta_label_max=bounds[1]
        )
        logits, zdot = dual_forward(model, inputs, tangents)
        check_classes("labels", labels, bounds[0], logits)
        raw, pseudo = scores_from_jvp(logits, zdot, labels, rows=rows)
        return Scores(raw, pseudo, logits, meta_loss)
