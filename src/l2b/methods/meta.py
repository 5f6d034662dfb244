"""Meta-learned example weights: L2RW (Ren et al. 2018) and L2B (Zhou et al. 2024)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..meta import NORMALIZATIONS, MetaWeights, create_engine, pseudo_labels_from
from ..options import Option
from .base import Method, StepOutput, batch_mean, predicted, register_method, unwrap_model

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
    meta_every : int, 1
        Compute the meta-gradient on every k-th step only. Each example keeps its last weights
        (a per-example memory: its two weights times the batch size, so that weights from batches
        of another size or epoch compare), and a step in between weighs its examples by their
        remembered weights, normalised over the batch to sum to one as the engine's are; its
        pseudo-labels are the step's own predictions. A batch holding an example never scored
        (the first epoch after the warm-up) gets the meta-gradient. The memory and the step count
        are the method's state: checkpointed, resumed exactly. One process only.
    meta_step : bool, False
        After the weighted step, one more SGD step on the clean meta batch itself (mean
        cross-entropy; the L2B segmentation variant's published code takes it).
    pseudo_views : {1, 5}
        Segmentation only. 1: the pseudo-mask is the current prediction. 5: the L2B
        segmentation variant's, every image (and meta image) trained on in five views (itself, a
        zoom-in, two zoom-outs, a flip), the pseudo-mask averaged over them
        (:mod:`l2b.segmentation.views`); one process only.
    """

    needs_meta = True
    rows: str
    options = (
        *WEIGHT_OPTIONS,
        Option(
            "meta_every",
            "int",
            1,
            "meta-gradient on every k-th step only; the steps between reuse each example's last weights",
            minimum=1,
        ),
        Option(
            "meta_step",
            "bool",
            False,
            "after each weighted step, one SGD step on the clean meta batch (the L2B segmentation variant's)",
        ),
        Option(
            "pseudo_views",
            "int",
            1,
            "segmentation: pseudo-masks from the current prediction (1) or averaged over five views (5)",
            minimum=1,
            maximum=5,
        ),
    )
    uses_engine = True

    def __init__(
        self,
        *,
        engine: str = "forward",
        normalize: str = "org",
        temperature: float = 1.0,
        head: str | None = None,
        tail_modules: int | None = None,
        meta_every: int = 1,
        meta_step: bool = False,
        pseudo_views: int = 1,
        **common,
    ):
        super().__init__(**common)
        self.meta_step = bool(meta_step)
        if pseudo_views not in (1, 5):
            raise ValueError(f"pseudo_views must be 1 (the current prediction) or 5 (five views), got {pseudo_views!r}")
        if pseudo_views == 5 and (meta_every != 1 or self.mixup):
            raise ValueError("pseudo_views=5 trains on five views of every image: not with meta_every > 1 or mixup")
        self.pseudo_views = int(pseudo_views)
        self._engine = create_engine(engine, head=head, tail_modules=tail_modules)  # checks the options
        if int(meta_every) != meta_every or meta_every < 1:
            raise ValueError(f"meta_every must be an int >= 1, got {meta_every!r}")
        self.meta_every = int(meta_every)
        # State with meta_every > 1 (checkpointed): each training example's last weights times the
        # batch size, (N, 2) float64 (NaN: never scored), and the steps taken.
        self.memory: Tensor | None = None
        self.steps = 0
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
        if self.pseudo_views == 5:
            return self._five_view_loss(model, optimizer, inputs, targets, batch, ctx)
        remembered = self._remembered(batch, dist)
        if remembered is not None:
            return self._reused_weights_loss(model, inputs, targets, remembered)
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
        if self.memory is not None:  # remember this batch's weights (relative to its size)
            scored = torch.stack([mw.alpha, mw.beta], dim=1).detach().double().cpu() * len(mw.alpha)
            self.memory[batch.index.cpu()] = scored
        return loss, StepOutput(
            loss=0.0,
            alpha=mw.alpha.detach(),
            beta=mw.beta.detach(),
            pseudo_labels=mw.pseudo_labels,
            predictions=predicted(logits, targets),
            stats={"meta_loss": mw.meta_loss, "all_zero": float(mw.all_zero)},
        )

    def step(self, model, optimizer, batch, ctx) -> StepOutput:
        """The weighted step (:meth:`Method.step`), then with ``meta_step`` one SGD step on the
        clean meta batch (mean cross-entropy, the same clipping; its loss in ``meta_step_loss``)."""
        out = super().step(model, optimizer, batch, ctx)
        if self.meta_step:
            loss = batch_mean(F.cross_entropy(model(batch.meta_inputs), batch.meta_labels, reduction="none"), ctx.dist)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if not all(bool(torch.isfinite(g).all()) for g in grads):  # the weighted step stands; skip this one
                optimizer.zero_grad(set_to_none=True)
                out.stats["meta_step_skipped"] = 1.0
                return out
            if self.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad)
            optimizer.step()
            out.stats["meta_step_loss"] = float(loss.detach())
        return out

    def _five_view_loss(self, model, optimizer, inputs: Tensor, targets: Tensor, batch, ctx):
        """The L2B segmentation variant's step: the noisy batch and the meta batch each in five
        views, the pseudo-masks averaged over an image's views; the record keeps one row per
        image: its original view's weights, pseudo-mask and prediction (the other views' maps
        are in other frames)."""
        from ..segmentation.views import VIEWS, averaged_pseudo_labels, draw_views, masks_of, views_of

        if inputs.dim() != 4 or targets.dim() != 3 or targets.is_floating_point():
            raise ValueError(
                f"pseudo_views=5 takes images (B, C, H, W) with masks (B, H, W), got inputs of shape "
                f"{tuple(inputs.shape)} and labels of shape {tuple(targets.shape)}"
            )
        if ctx.dist is not None and ctx.dist.world_size > 1:
            raise ValueError("pseudo_views=5 runs in one process")
        k, size = ctx.num_classes, tuple(inputs.shape[-2:])
        plan = draw_views(len(inputs), size, generator=ctx.generator)
        meta_plan = draw_views(len(batch.meta_inputs), size, generator=ctx.generator)
        x5, y5 = views_of(inputs, plan), masks_of(targets, plan, k)
        with pseudo_labels_from(lambda logits: averaged_pseudo_labels(logits, plan)):
            logits, mw = self._engine.step(
                unwrap_model(model),
                model,
                inputs=x5,
                targets=y5,
                meta_inputs=views_of(batch.meta_inputs, meta_plan),
                meta_labels=masks_of(batch.meta_labels, meta_plan, k),
                optimizer=optimizer,
                method=self.rows,
                collective=None,
                normalize=self.normalize,
                temperature=self.temperature,
            )

        return self.weighted_loss(logits, y5, mw), StepOutput(
            loss=0.0,
            alpha=mw.alpha.detach()[::VIEWS],
            beta=mw.beta.detach()[::VIEWS],
            pseudo_labels=mw.pseudo_labels[::VIEWS],
            predictions=logits.detach()[::VIEWS].argmax(dim=1),
            stats={"meta_loss": mw.meta_loss, "all_zero": float(mw.all_zero)},
        )

    # -- meta_every > 1: the per-example memory -----------------------------------------------------
    def start_epoch(self, model: nn.Module, train, *, epoch: int, device: torch.device) -> dict[str, float]:
        if self.meta_every > 1 and (self.memory is None or len(self.memory) != len(train)):
            self.memory = torch.full((len(train), 2), math.nan, dtype=torch.float64)
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {} if self.meta_every == 1 else {"memory": self.memory, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory, self.steps = state.get("memory"), int(state.get("steps", 0))

    def _remembered(self, batch, dist) -> Tensor | None:
        """This step's remembered weights (B, 2), or None when it computes the meta-gradient:
        every `meta_every`-th step, and any batch with an example never scored."""
        if self.meta_every == 1:
            return None
        if dist is not None and dist.world_size > 1:
            raise ValueError(f"meta_every > 1 runs in one process (method {self.name!r})")
        if self.memory is None or batch.index is None:
            raise ValueError(f"meta_every > 1 needs the epoch's start (start_epoch) and the batch index ({self.name})")
        step, self.steps = self.steps, self.steps + 1
        remembered = self.memory[batch.index.cpu()]
        if step % self.meta_every == 0 or bool(remembered.isnan().any()):
            return None
        return remembered

    def _reused_weights_loss(self, model, inputs: Tensor, targets: Tensor, remembered: Tensor):
        """A step between meta-gradients: the remembered weights (B, 2), normalised to sum to one
        over the batch, on the real forward's costs; pseudo-labels from its own predictions."""
        logits = model(inputs)
        total = remembered.sum()
        w = (remembered / total if total > 0 else torch.zeros_like(remembered)).to(logits.device, logits.dtype)
        mw = MetaWeights(
            alpha=w[:, 0],
            beta=w[:, 1],
            raw=torch.full((2, len(w)), math.nan, dtype=logits.dtype, device=logits.device),
            pseudo_labels=logits.detach().argmax(1),
            meta_loss=math.nan,
            all_zero=not bool(total > 0),
            logits=logits.detach(),
        )
        loss = self.weighted_loss(logits, targets, mw)
        return loss, StepOutput(
            loss=0.0,
            alpha=mw.alpha.detach(),
            beta=mw.beta.detach(),
            pseudo_labels=mw.pseudo_labels,
            predictions=predicted(logits, targets),
            stats={"all_zero": float(mw.all_zero)},
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
