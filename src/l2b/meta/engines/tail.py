"""``tail``: the exact forward engine over the last k blocks only (``tail_modules=k``).

Only the tail's parameters move in the virtual step and carry tangents (:mod:`l2b.meta.tail`
finds them); k = every block is ``forward``. Inside a step (one process) its dual forward is the
real step's forward, as ``fused``'s, so the blocks before the tail cost nothing extra; under data
parallelism it takes ``forward``'s route (weights on the bare module, then the real forward
through the wrapper).
"""

from __future__ import annotations

from ...options import Option
from ..engine import check_classes, dual_forward, meta_tangents, scores_from_jvp
from ..tail import tail_parameters
from . import Engine, Scores, register_engine
from .fused import real_step_weights


@register_engine("tail")
class TailEngine(Engine):
    """The forward engine restricted to the last ``tail_modules`` blocks."""

    options = (
        Option(
            "tail_modules",
            "int",
            None,
            "engine 'tail', required there: the number of last blocks with parameters it differentiates "
            "(residual blocks count as one; all of them is engine 'forward')",
            minimum=1,
            key="engine_tail_modules",
            metavar="K",
        ),
    )

    def parameters_of(self, model) -> list[str]:
        """The names, in `model`, of the parameters of the last ``tail_modules`` blocks of the
        engine's part of it."""
        part, prefix = self.part(model)
        return [prefix + n for n in tail_parameters(part, self.tail_modules)]

    def scores(self, model, *, inputs, labels, meta_inputs, meta_labels, optimizer, rows, collective=None,
               bounds=(None, None)) -> Scores:  # fmt: skip
        names = self.parameters_of(model)
        tangents, meta_loss = meta_tangents(
            model, meta_inputs, meta_labels, optimizer, collective=collective, params=names, meta_label_max=bounds[1]
        )
        logits, zdot = dual_forward(model, inputs, tangents)  # the blocks before the tail carry no tangent
        check_classes("labels", labels, bounds[0], logits)
        raw, pseudo = scores_from_jvp(logits, zdot, labels, rows=rows)
        return Scores(raw, pseudo, logits, meta_loss)

    def step(self, net, forward, *, inputs, targets, meta_inputs, meta_labels, optimizer, method, collective=None,
             normalize="org", temperature=1.0):  # fmt: skip
        if collective is not None:
            return super().step(
                net, forward, inputs=inputs, targets=targets, meta_inputs=meta_inputs, meta_labels=meta_labels,
                optimizer=optimizer, method=method, collective=collective, normalize=normalize,
                temperature=temperature,
            )  # fmt: skip
        return real_step_weights(
            self, net, inputs=inputs, targets=targets, meta_inputs=meta_inputs, meta_labels=meta_labels,
            optimizer=optimizer, method=method, normalize=normalize, temperature=temperature,
            params=self.parameters_of(net),
        )  # fmt: skip
