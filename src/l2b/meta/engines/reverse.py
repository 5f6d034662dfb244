"""``reverse``: the published formulation, a differentiable virtual step and a double backward.

Kept as the reference the other engines are tested against (the same weights as ``forward``, to
float rounding); several times their memory and time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..engine import check_classes, clone_buffers, global_meta_gradient, label_positions, pseudo_labels
from ..virtual_step import virtual_step
from . import Engine, Scores, register_engine


@register_engine("reverse")
class ReverseEngine(Engine):
    """The double-backward engine; its in-step form is the default."""

    def scores(self, model, *, inputs, labels, meta_inputs, meta_labels, optimizer, rows, collective=None,
               bounds=(None, None)) -> Scores:  # fmt: skip
        step = virtual_step(model, optimizer)
        # Fresh leaves so that no .grad of the real parameters is touched.
        params = {n: p.detach().requires_grad_(p.requires_grad) for n, p in model.named_parameters()}
        logits = functional_call(model, {**params, **clone_buffers(model)}, (inputs,))
        check_classes("labels", labels, bounds[0], logits)
        pseudo = pseudo_labels(logits.detach())
        # one perturbation per cost: per example, and per output position (pixel) when the logits have them
        eps = torch.zeros(2, *pseudo.shape, dtype=logits.dtype, device=logits.device, requires_grad=True)
        virtual_loss = (eps[0] * F.cross_entropy(logits, labels, reduction="none")).sum()
        if rows == 2:
            virtual_loss = virtual_loss + (eps[1] * F.cross_entropy(logits, pseudo, reduction="none")).sum()
        names = step.names
        grads = torch.autograd.grad(virtual_loss, [params[n] for n in names], create_graph=True, allow_unused=True)
        updated = step.apply(params, dict(zip(names, grads)))
        meta_logits = functional_call(model, {**params, **updated, **clone_buffers(model)}, (meta_inputs,))
        check_classes("meta_labels", meta_labels, bounds[1], meta_logits)
        if collective is None:
            meta_loss = F.cross_entropy(meta_logits, meta_labels)
            (g_eps,) = torch.autograd.grad(meta_loss, eps, allow_unused=True)
            raw = torch.zeros_like(eps) if g_eps is None else -g_eps.detach()
            return Scores(raw, pseudo, logits.detach(), float(meta_loss.detach()))
        # The meta loss of this replica sees only its meta shard: take the global meta gradient at
        # theta'(0) first, then pull it back to eps through the differentiable virtual step (a
        # vector-Jacobian product; theta' is affine in eps, so this is the same double backward).
        outs = list(updated.values())
        loss_sum = F.cross_entropy(meta_logits, meta_labels, reduction="sum")
        g, meta_loss = global_meta_gradient(loss_sum, label_positions(meta_labels), outs, collective)
        (g_eps,) = torch.autograd.grad(outs, eps, grad_outputs=g, allow_unused=True)
        raw = torch.zeros_like(eps) if g_eps is None else -g_eps.detach()
        return Scores(raw, pseudo, logits.detach(), meta_loss)
