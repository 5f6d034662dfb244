"""UNICON's pieces (Karim et al., CVPR 2022), as plain functions beside DivideMix's.

UNICON divides the training set as DivideMix does, into a labelled part trained with its
(refined) labels and an unlabelled part trained on guessed targets, but by a different rule:

- **Divergence.** Each example's Jensen-Shannon divergence between its one-hot given label and
  the two networks' mean prediction (:func:`label_divergence`), natural logarithm, so in
  [0, ln 2].
- **Threshold.** d = the mean divergence; when d > d_u it is lowered to d - (d - min) / tau
  (:func:`selection_threshold`). The share of examples below it is the selection ratio.
- **Uniform selection.** Per given class, the same number (ratio x N / K, rounded down) of
  lowest-divergence examples form the labelled set (a class with fewer gives all of them);
  the rest is unlabelled (:func:`uniform_selection`).
- **Refinement weight** of a labelled example's given label: 1 - divergence, with divergences
  below 0.5 counted as 0 first (:func:`refinement_weights`).
- **Contrastive loss** on two strong views of the unlabelled examples: SimCLR's NT-Xent at
  temperature 0.05 (:func:`nt_xent`).

Facts read from the published code (github.com/nazmul-karim170/UNICON, ``Train_cifar.py``,
``dataloader_cifar.py``, ``Contrastive_loss.py``), including two that the paper does not say:
the divergence uses natural logarithms with 1e-10 added inside them, so it never exceeds
ln 2 = 0.693 < d_u = 0.7 and the lowered threshold is never used with the published d_u (the
published branch would also fail: it reads ``arg.tau``); and the refinement weight is 1 for
every divergence below 0.5, that is for nearly every selected example.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import Option
from .base import Method, StepOutput, register_method
from .dividemix import (
    DivideMixWarmup,
    L2BCombination,
    MixMatchBatch,
    _check_pair,
    eval_logits,
    mixmatch_step,
    mixmatch_targets,
    unlabelled_weight,
)
from .meta import WEIGHT_OPTIONS
from .step import Batch, StepContext

__all__ = [
    "UNICON",
    "UNICONL2B",
    "js_divergence",
    "label_divergence",
    "nt_xent",
    "refinement_weights",
    "selection_threshold",
    "uniform_selection",
]

_EPS = 1e-10  # the published code's, inside every logarithm


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence between rows of two distributions (N, K) -> (N,), natural
    logarithm: 0.5 KL(p || m) + 0.5 KL(q || m), m = (p + q) / 2, with 1e-10 inside the logs."""
    m = (p + q) / 2

    def kl(a: Tensor, b: Tensor) -> Tensor:
        return (a * ((a + _EPS) / (b + _EPS)).log()).sum(dim=1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def label_divergence(probs: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Each example's divergence from its given label: JSD(mean prediction (N, K), one-hot of
    `labels` (N,)) -> (N,) in [0, ln 2]. `probs` is the two networks' mean softmax."""
    return js_divergence(probs, F.one_hot(labels, num_classes).to(probs.dtype))


def selection_threshold(divergence: Tensor, *, d_u: float = 0.7, tau: float = 5.0) -> float:
    """The labelled set's divergence threshold: the mean d, lowered to d - (d - min) / tau when
    d > d_u (a training set mostly far from its labels: keep fewer)."""
    d = float(divergence.mean())
    if d > d_u:
        d = d - (d - float(divergence.min())) / tau
    return d


def uniform_selection(divergence: np.ndarray, labels: np.ndarray, num_classes: int, *, threshold: float) -> np.ndarray:
    """The labelled set: per given class, the ``int(ratio * N / K)`` examples of lowest divergence,
    ratio = the share of all N examples below `threshold` (a class with fewer examples gives
    them all; ties keep the lower index). Returns their indices (L,) int64, class by class."""
    divergence, labels = np.asarray(divergence, dtype=np.float64), np.asarray(labels)
    n = len(labels)
    ratio = float(np.sum(divergence < threshold)) / max(n, 1)
    per_class = int(ratio * n / num_classes)
    chosen = []
    for k in range(num_classes):
        members = np.flatnonzero(labels == k)
        order = np.argsort(divergence[members], kind="stable")
        chosen.append(members[order[:per_class]])
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, np.int64)


def refinement_weights(divergence: Tensor) -> Tensor:
    """The weight of a labelled example's given label in its refined target, as published:
    1 - divergence, where divergences below 0.5 count as 0 (weight 1)."""
    return 1.0 - torch.where(divergence < 0.5, torch.zeros_like(divergence), divergence)


def nt_xent(z1: Tensor, z2: Tensor, *, temperature: float = 0.05) -> Tensor:
    """SimCLR's NT-Xent loss of two views' projections (B, D) each: every one of the 2B rows,
    L2-normalised, is an anchor whose positive is the other view of its example and whose
    negatives are the other 2B - 2 rows; the mean over anchors of
    -log(exp(s_pos / t) / sum over the 2B - 1 others of exp(s / t)), s the cosine similarity."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent takes two (B, D) projections of the same shape, got {z1.shape} and {z2.shape}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), -math.inf)
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, partner)


# -- the method -----------------------------------------------------------------------------------


@register_method("unicon")
class UNICON(Method):
    """UNICON (Karim et al., CVPR 2022): two networks; at every epoch start, the uniform
    selection by each example's divergence from its given label (:func:`uniform_selection`);
    per batch and per network, label refinement of the selected part and co-guessing of the
    rest (as DivideMix's :func:`~l2b.methods.dividemix.mixmatch_targets`, on the weak views),
    MixMatch on the two *strong* views, and the contrastive loss (:func:`nt_xent`) on the
    projections of the unlabelled part's strong views. Warm-up: each network alone with
    cross-entropy (DivideMix's). The published defaults are CIFAR-10's (lambda_u 30; 0 at 20 %
    noise, 50 at 90 %).

    Where it differs from the published code: one division per epoch (the published code
    divides again before training its second network), made by the pass at the epoch's start
    over the evaluation view; each batch of the trainer's one pass over the training set is split
    by it into labelled and unlabelled rows (the published code draws labelled and unlabelled
    batches from two loaders), and the cosine schedule replaces its own.
    """

    networks = 2
    views = {"second": "weak", "strong_1": "strong", "strong_2": "strong"}
    ddp_options = {"find_unused_parameters": True}
    projection_dim = 128
    options = (
        Option("lambda_u", "float", 30.0, "UNICON: weight of the unlabelled loss", minimum=0, key="unicon_lambda_u"),
        Option("lambda_c", "float", 0.025, "UNICON: weight of the contrastive loss", minimum=0, key="unicon_lambda_c"),
        Option("sharpen_temperature", "float", 0.5, "UNICON: sharpening temperature T", above=0, key="unicon_sharpen"),
        Option("mix_alpha", "float", 4.0, "UNICON: MixMatch's Beta(alpha, alpha)", above=0, key="unicon_alpha"),
        Option(
            "rampup_epochs",
            "float",
            16.0,
            "UNICON: epochs over which lambda_u ramps up",
            minimum=0,
            key="unicon_rampup",
        ),
        Option(
            "d_u",
            "float",
            0.7,
            "UNICON: mean divergence above which the threshold is lowered",
            minimum=0,
            key="unicon_d_u",
        ),
        Option("tau", "float", 5.0, "UNICON: the threshold's filtering coefficient", above=0, key="unicon_tau"),
        Option(
            "contrastive_temperature",
            "float",
            0.05,
            "UNICON: the contrastive loss's temperature",
            above=0,
            key="unicon_contrastive_temperature",
        ),
    )

    def __init__(
        self,
        *,
        lambda_u: float = 30.0,
        lambda_c: float = 0.025,
        sharpen_temperature: float = 0.5,
        mix_alpha: float = 4.0,
        rampup_epochs: float = 16.0,
        d_u: float = 0.7,
        tau: float = 5.0,
        contrastive_temperature: float = 0.05,
        **common,
    ):
        super().__init__(**common)
        if self.mixup:
            raise ValueError(f"mixup does not apply to {self.name}: it always mixes (MixMatch, with mix_alpha)")
        self.lambda_u, self.lambda_c, self.sharpen_temperature = (
            float(lambda_u),
            float(lambda_c),
            float(sharpen_temperature),
        )
        self.mix_alpha, self.rampup_epochs = float(mix_alpha), float(rampup_epochs)
        self.d_u, self.tau, self.contrastive_temperature = float(d_u), float(tau), float(contrastive_temperature)
        # State (checkpointed): the epoch's division, over the training set.
        self.labelled: Tensor | None = None  # (N,) bool
        self.weight: Tensor | None = None  # (N,) refinement weight of the given label

    def warmup_method(self) -> Method:
        return DivideMixWarmup(clip_grad=self.clip_grad)

    def loss(self, *args, **kwargs):
        raise NotImplementedError("UNICON makes its own steps (see step)")

    @torch.no_grad()
    def start_epoch(self, model: nn.Module, train, *, epoch: int, device: torch.device) -> dict[str, float]:
        """The division: divergence of each example's given label from the two networks' mean
        eval-mode prediction, threshold, uniform selection, refinement weights."""
        pair = _check_pair(model, self.name)
        probs = [torch.softmax(eval_logits(net, train, device=device).float(), 1) for net in pair.nets]
        labels = train.labels.to(device)
        divergence = label_divergence((probs[0] + probs[1]) / 2, labels, probs[0].shape[1]).cpu()
        threshold = selection_threshold(divergence, d_u=self.d_u, tau=self.tau)
        chosen = uniform_selection(divergence.numpy(), labels.cpu().numpy(), probs[0].shape[1], threshold=threshold)
        self.labelled = torch.zeros(len(labels), dtype=torch.bool)
        self.labelled[torch.from_numpy(chosen)] = True
        self.weight = refinement_weights(divergence)
        return {"labelled_share": float(self.labelled.double().mean()), "divergence_threshold": threshold}

    def state_dict(self) -> dict[str, Any]:
        return {"labelled": self.labelled, "weight": self.weight}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labelled, self.weight = state.get("labelled"), state.get("weight")

    def step(self, model, optimizer, batch: Batch, ctx: StepContext) -> StepOutput:
        """Network 0 then network 1 on this batch's division: MixMatch on the strong views with
        refined / co-guessed targets from the weak ones, plus the contrastive loss."""
        pair = _check_pair(model, self.name)
        if ctx.dist is not None and ctx.dist.world_size > 1:
            raise ValueError(f"{self.name} runs in one process (its projection heads bypass DistributedDataParallel)")
        if self.labelled is None or batch.index is None or any(v not in batch.views for v in self.views):
            raise ValueError(
                f"{self.name}: a step needs the epoch's division (start_epoch), the batch index and its views"
            )
        rows = batch.index.cpu()
        labelled = self.labelled[rows].to(batch.inputs.device)
        w = self.weight[rows].to(device=batch.inputs.device, dtype=batch.inputs.dtype)
        s1, s2 = batch.views["strong_1"], batch.views["strong_2"]
        weight_u = unlabelled_weight(ctx.progress, lambda_u=self.lambda_u, rampup_epochs=self.rampup_epochs)
        losses, stats = [], {}
        for i in (0, 1):
            targets = mixmatch_targets(
                pair.nets[i],
                pair.nets[1 - i],
                batch.inputs,
                batch.views["second"],
                batch.labels,
                w,
                p_threshold=0.5,
                temperature=self.sharpen_temperature,
                num_classes=ctx.num_classes,
                labelled=labelled,
            )
            u = ~labelled
            strong = dataclasses.replace(targets, inputs=torch.cat([s1[labelled], s2[labelled], s1[u], s2[u]]))
            pair.nets[i].train()
            contrastive = None
            if int(u.sum()) > 0 and self.lambda_c > 0:
                z1, z2 = pair.project(s1[u], i), pair.project(s2[u], i)
                contrastive = self.lambda_c * nt_xent(z1, z2, temperature=self.contrastive_temperature)
            loss, terms = mixmatch_step(
                model,
                i,
                optimizer,
                strong,
                mix_alpha=self.mix_alpha,
                weight_u=weight_u,
                generator=ctx.generator,
                dist=ctx.dist,
                clip_grad=self.clip_grad,
                extra_loss=contrastive,
            )
            if contrastive is not None:
                terms["loss_contrastive"] = float(contrastive.detach()) / self.lambda_c
            losses.append(loss)
            stats.update({f"{k}_{i}": v for k, v in terms.items()})
            stats.update(self.after_mixmatch(i, model, optimizer, strong, batch, ctx))
        stats["weight_u"] = weight_u
        return StepOutput(loss=float(np.mean(losses)), stats=stats)

    def after_mixmatch(
        self,
        i: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        mixmatch: MixMatchBatch,
        batch: Batch,
        ctx: StepContext,
    ) -> dict[str, float]:
        """What follows network `i`'s step, given its un-mixed batch (the strong views with their
        targets); returns scalars for the step's record. Nothing for UNICON; UNICON-L2B's L2B
        step after network 0."""
        return {}


@register_method("unicon-l2b")
class UNICONL2B(L2BCombination, UNICON):
    """UNICON with an L2B step after network 0's step, as the L2B authors combine them.

    As in their published code (github.com/yuyinzhou/L2B, L2B_UNICON/Train_cifar.py, ``l2b``
    after ``train``'s SGD step, for the first network only): the step's inputs are that step's
    MixMatch inputs before mixing, the *strong* views of the labelled and the unlabelled part
    (``all_inputs``), with their refined / co-guessed targets from the weak views (``target_a``);
    cost row 1 cross-entropy against the soft target, row 2 against the network's own argmax,
    weights normalised over both rows (:class:`~l2b.methods.dividemix.L2BStep`). The gradient
    norm is clipped at 0.25 for CIFAR-10 and 0.8 otherwise, as published (``l2b_clip_grad``; the
    default is CIFAR-10's, like UNICON's other defaults). The published meta batches (1,000 clean
    training images, batch 64) pass through its training transform with AutoAugment; here they
    are the run's meta batches as every meta method gets them.

    meta_split : {"clean", "labelled"}
        The clean meta set (published ``need_clean``), or the first weak view of the batch's
        labelled part with its given labels (the published code's labelled loader without it).
    """

    options = (
        Option(
            "meta_split",
            "str",
            "clean",
            "unicon-l2b: meta batches from the clean meta set, or from UNICON's labelled part of each batch",
            choices=("clean", "labelled"),
            key="unicon_meta",
        ),
        Option(
            "l2b_clip_grad",
            "float",
            0.25,
            "unicon-l2b: gradient-norm clip of the L2B step (published: 0.25 CIFAR-10, 0.8 others)",
            above=0,
            key="unicon_l2b_clip",
        ),
        *WEIGHT_OPTIONS,
    )
