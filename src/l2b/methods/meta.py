"""Meta-learned example weights: L2RW (Ren et al. 2018) and L2B (Zhou et al. 2024)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..meta import NORMALIZATIONS, MetaWeights, create_engine
from ..options import Option
from .base import Method, StepOutput, predicted, register_method, unwrap_model

#: The options of the meta-gradient weights, for every method that computes them (L2RW, L2B,
#: DivideMix-L2B); the engines' own options (``head``, ``tail_modules``) come with ``uses_engine``.
WEIGHT_OPTIONS = (
    Option(
        "engine",
        "str",
        "forward",
        "meta-gradient engine. Exact, all three give the same weights: 'forward' (forward mode, memory close "
        "to a plain step), 'fused' (forward mode sharing the real step's forward: a little faster, about 3x "
        "the memory), 'reverse' (the published double backward). Cheaper, the meta-gradient over part of the "
        "network only (the rest held fixed in the virtual step; fidelity in "
        "benchmarks/results/engine_fidelity.md): 'head' (the final linear layer, in closed form: one extra "
        "forward of the meta batch), 'tail' (the last --engine-tail-modules blocks, exact there)",
        choices_of="engine",
    ),
    Option(
        "normalize",
        "str",
        "org",
        "how raw meta-gradient scores become weights: 'org' (clamped at zero, divided by their sum), "
        "'softmax', 'sigmoid'",
        choices=("org", "softmax", "sigmoid"),
    ),
    Option("temperature", "float", 1.0, "the softmax normalisation's temperature", above=0),
)


class _MetaMethod(Method):
    """Weights from the meta-gradient, then a real step on the weighted costs.

    Options (keyword-only, besides mixup / clip_grad):

    engine : {"forward", "fused", "reverse", "head", "tail"}
        ``forward`` (default): the forward-mode engine (a dual forward without autograd graph),
        then the ordinary real forward and backward; peak memory stays close to a plain step.
        ``fused``: the dual forward of the noisy batch is also the real step's forward (its primal
        is back-propagated), saving one forward pass (about a tenth of the step) but keeping
        every intermediate tangent alive until the backward: about 3x the peak memory of a plain
        step on PreAct ResNet-18.  ``reverse``: the published double-backward formulation.  These
        three give the same weights and updates.
        ``head``: the meta-gradient over the final nn.Linear only, in closed form. The noisy
        batch's features are the real step's own (read by a forward hook on the head, removed
        after the forward), so the only extra work is one forward of the meta batch without
        graph. ``tail``: the exact forward engine over the last `tail_modules` blocks only; its
        dual forward is the real step's forward (as ``fused``, tangents in the tail only), so the
        blocks before the tail cost nothing extra. Both hold the rest of the network fixed in
        the virtual step: cheaper, and not the same weights (see docs/meta-gradient.md).
        Under data parallelism (``StepContext.dist``) ``forward``, ``reverse`` and ``head`` give
        the single-process weights of the concatenated batches, and ``tail`` does too by the
        ``forward`` route (weights on the bare module, then the real forward through the wrapper:
        one more forward of the blocks before the tail); ``fused`` is refused, because its real
        forward would bypass the DistributedDataParallel wrapper's forward (and so its gradient
        synchronisation).
    normalize : {"org", "softmax", "sigmoid"};  temperature : float (softmax only).
    head : str or None
        ``engine="head"`` only: the name of the output nn.Linear (e.g. ``"fc"``); None: the model's
        last nn.Linear, which must produce the model's output.
    tail_modules : int or None
        ``engine="tail"`` only, and required there: the number k of last blocks with parameters
        (:func:`l2b.meta.model_blocks`).
    """

    needs_meta = True
    rows: str
    options = WEIGHT_OPTIONS
    uses_engine = True

    def __init__(
        self,
        *,
        engine: str = "forward",
        normalize: str = "org",
        temperature: float = 1.0,
        head: str | None = None,
        tail_modules: int | None = None,
        **common,
    ):
        super().__init__(**common)
        self._engine = create_engine(engine, head=head, tail_modules=tail_modules)  # checks the options
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
        if not temperature > 0:  # NaN too
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.engine, self.normalize, self.temperature = engine, normalize, float(temperature)
        self.head, self.tail_modules = head, tail_modules

    def loss(self, model, optimizer, inputs, targets, batch, ctx):
        """The weights (the engine's in-step form: it may share the real forward), then the
        weighted loss of the real forward's logits.

        Under data parallelism the meta-gradient runs on the bare module with global reductions
        and the real forward through the wrapper (the only forward that updates BatchNorm
        statistics). The weights sum to one over all replicas, so the single-process loss of the
        concatenated batch is the sum over replicas of each one's weighted sum; DDP divides the
        summed gradients by world_size, hence each replica back-propagates world_size times its part.
        """
        dist = ctx.dist
        if dist is not None:
            self._check_distributed(model, dist)
        logits, mw = self._engine.step(
            unwrap_model(model),
            model,
            inputs=inputs,
            targets=targets,
            meta_inputs=batch.meta_inputs,
            meta_labels=batch.meta_labels,
            optimizer=optimizer,
            method=self.rows,
            collective=dist,
            normalize=self.normalize,
            temperature=self.temperature,
        )
        loss = self.weighted_loss(logits, targets, mw)
        if dist is not None:
            loss = loss * dist.world_size
        return loss, StepOutput(
            loss=0.0,
            alpha=mw.alpha.detach(),
            beta=mw.beta.detach(),
            pseudo_labels=mw.pseudo_labels,
            predictions=predicted(logits, targets),
            stats={"meta_loss": mw.meta_loss, "all_zero": float(mw.all_zero)},
        )

    def _check_distributed(self, model, dist) -> None:
        net = unwrap_model(model)
        if dist.world_size > 1 and any(isinstance(m, nn.SyncBatchNorm) for m in net.modules()):
            raise ValueError(
                f"method {self.name!r} cannot differentiate through torch.nn.SyncBatchNorm: it has no "
                "forward-mode derivative and no double backward, which the meta-gradient needs; keep "
                "per-replica BatchNorm for meta methods (SyncBatchNorm works with ce / bootstrap)"
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
