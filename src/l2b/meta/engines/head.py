"""``head``: the meta-gradient over the final nn.Linear only, in closed form.

The rest of the network is held at theta in the virtual step (exactly ``forward`` for a model
trained only in its head; an approximation otherwise, measured in
benchmarks/results/engine_fidelity.md). No automatic differentiation: the head's input features
and the softmax give the scores (:mod:`l2b.meta.head`). Inside a step the noisy batch's features
are the real forward's own, read by a forward hook on the head, so the only extra work is one
forward of the meta batch without graph.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from ...options import Option
from ..engine import (
    ROWS,
    check_classes,
    clone_buffers,
    head_names,
    head_tangents,
    scores_from_jvp,
    weights_from_scores,
    without_autocast,
)
from ..head import capture_head, find_head, head_jvp
from . import Engine, Scores, register_engine


@register_engine("head")
class HeadEngine(Engine):
    """The closed-form engine over the output layer (``head``: its module name; None: the model's
    last nn.Linear, which must produce the model's output)."""

    options = (
        Option(
            "head",
            "str",
            None,
            "engine 'head': the output nn.Linear's name, e.g. fc (unset: the model's last nn.Linear, which must "
            "produce the logits)",
            key="engine_head",
            metavar="MODULE",
        ),
    )

    def head_name(self, model) -> str:
        """The output layer's name in `model` (looked up in the engine's part of it)."""
        part, prefix = self.part(model)
        return prefix + find_head(part, name=self.head)

    def scores(self, model, *, inputs, labels, meta_inputs, meta_labels, optimizer, rows, collective=None,
               bounds=(None, None)) -> Scores:  # fmt: skip
        name = self.head_name(model)
        values = {n: p.detach() for n, p in model.named_parameters()}
        with torch.no_grad(), capture_head(model, name) as cap:
            logits = functional_call(model, {**values, **clone_buffers(model)}, (inputs,))
        check_classes("labels", labels, bounds[0], logits)
        features = cap.features()
        tangents, meta_loss = head_tangents(
            model, meta_inputs, meta_labels, optimizer, head=name, collective=collective, meta_label_max=bounds[1]
        )
        w, b = head_names(name)
        zdot = head_jvp(features, tangents.get(w), tangents.get(b), logits.shape[1])
        raw, pseudo = scores_from_jvp(logits, zdot, labels, rows=rows)
        return Scores(raw, pseudo, logits, meta_loss)

    def step(self, net, forward, *, inputs, targets, meta_inputs, meta_labels, optimizer, method, collective=None,
             normalize="org", temperature=1.0):  # fmt: skip
        """The real forward first (through `forward`, a DDP wrapper too), its head input read by a
        hook on the head of `net` (or of its part ``within``; removed right after), then the meta
        batch's forward and the closed-form scores; all in float32 whatever the autocast."""
        part, prefix = self.part(net)
        own = find_head(part, name=self.head)
        head = prefix + own
        with without_autocast(inputs):
            with capture_head(part, own) as cap:  # the part's hooks fire whoever calls it
                logits = forward(inputs)
            features = cap.features().detach()
            tangents, meta_loss = head_tangents(
                net, meta_inputs, meta_labels, optimizer, head=head, collective=collective
            )
            w, b = head_names(head)
            zdot = head_jvp(features, tangents.get(w), tangents.get(b), logits.shape[1])
            rows = ROWS[method]
            raw, pseudo = scores_from_jvp(logits.detach(), zdot, targets, rows=rows)
            mw = weights_from_scores(
                raw, pseudo, logits, meta_loss, rows=rows, collective=collective, normalize=normalize,
                temperature=temperature,
            )  # fmt: skip
        return logits, mw
