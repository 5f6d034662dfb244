"""DivideMix (Li, Socher and Hoi, ICLR 2020), and L2B on top of it (Zhou et al., CVPR 2024).

Two networks are warmed up with cross-entropy. Then, at the start of every epoch, each network's
per-example losses on the training set, normalised to [0, 1], fit a two-component Gaussian
mixture; the posterior of the low-loss component is each example's clean probability. Each
network trains on the division made by the *other* one: examples above the threshold are
labelled (their label co-refined with the network's own predictions), the rest unlabelled (their
label co-guessed by both networks), and MixMatch mixes the two parts. Prediction averages the
two networks.

How it fits the trainer (see docs/architecture.md): the model is a :class:`TwoNetworks` module,
one SGD optimizer holds both networks' parameters (each step back-propagates into one network
only, so SGD leaves the other untouched), the division is made in :meth:`DivideMix.start_epoch`
and kept in the method's state (checkpointed), and every step takes two augmented views of the
batch.

Where this differs from the published code (github.com/LiJunnan1992/DivideMix), and why:

- One epoch is one pass over all training examples in the trainer's batches; each batch is
  divided by the other network's clean probabilities into its labelled and unlabelled parts. The
  published code draws a batch of B labelled and one of B unlabelled examples per step from two
  loaders, for |labelled| / B steps. Both networks train on every batch, one after the other.
- The co-refinement and co-guessing forwards run on the whole batch at once (the published code
  runs the labelled and unlabelled parts separately), so a part of one example still has
  BatchNorm statistics.
- The learning-rate schedule is the trainer's cosine schedule (published: step decay at epoch 150).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..meta import Collective, create_engine
from ..models.projection import ProjectionHead, feature_width, features_of
from ..options import Option
from .base import (
    DECLARED,
    Method,
    StepOutput,
    _check_finite_gradients,
    create_method,
    mix_coefficients,
    register_method,
    unwrap_model,
)
from .meta import WEIGHT_OPTIONS
from .step import Batch, StepContext

__all__ = [
    "DivideMix",
    "DivideMixL2B",
    "L2BCombination",
    "L2BStep",
    "MixMatchBatch",
    "TwoNetworks",
    "clean_probability",
    "co_divide",
    "co_guessed_targets",
    "co_refined_targets",
    "eval_logits",
    "mixmatch_loss",
    "mixmatch_step",
    "mixmatch_targets",
    "network_losses",
    "sharpen",
    "unlabelled_weight",
]


class TwoNetworks(nn.Module):
    """Two networks trained side by side, as one module.

    With `projection_dim`, each network also gets a projection head on its features
    (:meth:`project`), which contrastive losses read.

    ``forward(x)`` is the average of the two networks' logits (the published code predicts with
    their sum: the same argmax), so evaluation, model selection, ``model.pt``, ``l2b evaluate``
    and ``l2b predict`` treat the pair as one classifier. ``forward(x, net=i)`` runs network i
    alone (through a DistributedDataParallel wrapper too).
    """

    def __init__(self, first: nn.Module, second: nn.Module, *, projection_dim: int | None = None):
        super().__init__()
        self.nets = nn.ModuleList([first, second])
        if projection_dim is not None:  # a projection head per network, for contrastive losses (UNICON)
            self.projections = nn.ModuleList([ProjectionHead(feature_width(n), projection_dim) for n in self.nets])

    def project(self, x: Tensor, net: int) -> Tensor:
        """Network `net`'s projection (B, projection_dim) of the features its output layer
        receives for `x` (:mod:`l2b.models.projection`)."""
        return self.projections[net](features_of(self.nets[net], x))

    def forward(self, x: Tensor, net: int | None = None) -> Tensor:
        if net is None:
            return (self.nets[0](x) + self.nets[1](x)) / 2
        return self.nets[net](x)

    def member(self, i: int) -> nn.Module:
        """A view that runs network i and whose parameters are the pair's (so an optimizer over
        the pair, and l2b.meta_weights reading it, see the same tensors)."""
        return _Member(self, i)


class _Member(nn.Module):
    def __init__(self, pair: TwoNetworks, i: int):
        super().__init__()
        self.pair, self.i = pair, i

    def forward(self, x: Tensor) -> Tensor:
        return self.pair(x, net=self.i)


# -- the pieces, as plain functions --------------------------------------------------------------


def clean_probability(losses: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Each example's probability of being clean from its losses: the posterior of the low-mean
    component of a two-component Gaussian mixture fitted to them.

    losses : (N,) per-example losses, already normalised to [0, 1] (or averaged over epochs).
    Returns (N,) float64 in [0, 1]. The mixture's settings are the published code's
    (``max_iter=10, tol=1e-2, reg_covar=5e-4``); `seed` fixes its k-means initialisation.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = np.asarray(losses, dtype=np.float64).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    with warnings.catch_warnings():  # ten EM iterations, as published, often stop before tol: expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(x)
    return gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.ravel()))]


def normalised(losses: Tensor) -> Tensor:
    """(losses - min) / (max - min), (N,); all zeros when every loss is the same."""
    span = losses.max() - losses.min()
    return (losses - losses.min()) / span if span > 0 else torch.zeros_like(losses)


def sharpen(probs: Tensor, temperature: float) -> Tensor:
    """p^(1/T), renormalised over classes: (B, K) -> (B, K)."""
    p = probs ** (1.0 / temperature)
    return p / p.sum(dim=1, keepdim=True)


def co_refined_targets(
    probs_1: Tensor, probs_2: Tensor, labels: Tensor, clean_prob: Tensor, *, num_classes: int, temperature: float
) -> Tensor:
    """Label co-refinement of labelled examples: w * onehot(y) + (1 - w) * mean(p_1, p_2), sharpened.

    probs_1, probs_2 : (L, K) the network's softmax on the two views;  labels : (L,) given labels;
    clean_prob : (L,) w, the other network's clean probability. Returns (L, K).
    """
    w = clean_prob.reshape(-1, 1).to(probs_1.dtype)
    mixed = w * F.one_hot(labels, num_classes).to(probs_1.dtype) + (1 - w) * (probs_1 + probs_2) / 2
    return sharpen(mixed, temperature)


def co_guessed_targets(probs: list[Tensor], *, temperature: float) -> Tensor:
    """Label co-guessing of unlabelled examples: the mean of both networks' softmax on both
    views (four (U, K) tensors), sharpened. Returns (U, K)."""
    return sharpen(torch.stack(probs).mean(dim=0), temperature)


def unlabelled_weight(progress: float, *, lambda_u: float, rampup_epochs: float) -> float:
    """lambda_u ramped up linearly over `rampup_epochs` epochs of DivideMix training
    (`progress`: epochs since the warm-up ended, fractional within an epoch)."""
    return lambda_u * float(np.clip(progress / rampup_epochs, 0.0, 1.0)) if rampup_epochs > 0 else lambda_u


def mixmatch_loss(
    logits: Tensor, targets: Tensor, num_labelled: int, *, weight_u: float
) -> tuple[Tensor, dict[str, float]]:
    """The DivideMix loss of one mixed batch.

    logits : (n, K) of the mixed inputs, the first `num_labelled` rows from labelled examples;
    targets : (n, K) their mixed targets. Terms: Lx = mean cross-entropy against the soft targets
    (labelled rows), Lu = mean squared error between softmax and targets (unlabelled rows, mean
    over rows and classes), and the uniform-prior penalty sum_k (1/K) log((1/K) / mean_i p_ik)
    over all rows. Returns Lx + weight_u * Lu + penalty and the three terms.
    """
    probs = torch.softmax(logits, dim=1)
    zero = logits.new_zeros(())
    lx = -(F.log_softmax(logits[:num_labelled], dim=1) * targets[:num_labelled]).sum(1).mean() if num_labelled else zero
    lu = ((probs[num_labelled:] - targets[num_labelled:]) ** 2).mean() if num_labelled < len(logits) else zero
    prior = torch.full((logits.shape[1],), 1.0 / logits.shape[1], dtype=logits.dtype, device=logits.device)
    penalty = (prior * torch.log(prior / probs.mean(0))).sum()
    loss = lx + weight_u * lu + penalty
    return loss, {"loss_x": float(lx.detach()), "loss_u": float(lu.detach()), "penalty": float(penalty.detach())}


@torch.no_grad()
def eval_logits(net: nn.Module, train, *, device: torch.device) -> Tensor:
    """One network's eval-mode logits (N, K) over the training set's evaluation view (`train`: a
    batch source with ``eval_batches``); the network's mode is restored."""
    was = net.training
    net.eval()
    logits = torch.cat([net(x.to(device)) for x in train.eval_batches(1024, device)])
    net.train(was)
    return logits


@torch.no_grad()
def network_losses(pair: TwoNetworks, train, *, device: torch.device) -> Tensor:
    """Each network's per-example cross-entropy on the training set (eval mode, evaluation
    view), normalised to [0, 1]: (2, N) float. `train` is a batch source (``labels`` (N,),
    ``eval_batches``)."""
    labels = train.labels.to(device)
    losses = [
        normalised(F.cross_entropy(eval_logits(net, train, device=device).float(), labels, reduction="none")).cpu()
        for net in pair.nets
    ]
    return torch.stack(losses)


def co_divide(history: list[Tensor], *, seed: int) -> Tensor:
    """DivideMix's division: the losses of the last epochs (each (2, N)) averaged, then one
    two-component mixture per network (:func:`clean_probability`). Returns the clean
    probabilities (2, N) float64; network i's are what network 1 - i trains with."""
    averaged = torch.stack(history).mean(0).double().numpy()  # (2, N)
    return torch.from_numpy(np.stack([clean_probability(a, seed=seed) for a in averaged]))


@dataclass
class MixMatchBatch:
    """One network's MixMatch batch before mixing (what :func:`mixmatch_targets` builds).

    Attributes
    ----------
    inputs : Tensor, shape (n, ...)
        Both views of the labelled examples, then both views of the unlabelled ones.
    targets : Tensor, shape (n, K)
        Their soft targets: co-refined (labelled rows), co-guessed (unlabelled rows).
    num_labelled : int
        How many of the first rows come from labelled examples (twice their count).
    labelled_inputs, labelled_labels : Tensor (L, ...) and (L,)
        The first view of the labelled examples and their given labels.
    labelled_share : float
        The share of the batch labelled by the division.
    """

    inputs: Tensor
    targets: Tensor
    num_labelled: int
    labelled_inputs: Tensor
    labelled_labels: Tensor
    labelled_share: float


@torch.no_grad()
def mixmatch_targets(
    net: nn.Module,
    other: nn.Module,
    x1: Tensor,
    x2: Tensor,
    labels: Tensor,
    clean_prob: Tensor,
    *,
    p_threshold: float,
    temperature: float,
    num_classes: int,
    labelled: Tensor | None = None,
) -> MixMatchBatch:
    """Split a batch by the other network's clean probability `clean_prob` (B,) at
    `p_threshold`, then co-refine the labelled part's targets (:func:`co_refined_targets`) and
    co-guess the unlabelled part's (:func:`co_guessed_targets`) from both networks' predictions
    on both views `x1`, `x2` (B, ...). As published: `net` (the trained one) in train mode,
    `other` in eval mode (and back in train mode after). `labelled` (B,) bool, when given, is the
    division itself (UNICON's uniform selection), `clean_prob` then only the refinement weight."""
    if labelled is None:
        labelled = clean_prob > p_threshold
    net.train()
    other.eval()
    p1, p2 = torch.softmax(net(x1), 1), torch.softmax(net(x2), 1)
    q1, q2 = torch.softmax(other(x1), 1), torch.softmax(other(x2), 1)
    other.train()
    tx = co_refined_targets(
        p1[labelled],
        p2[labelled],
        labels[labelled],
        clean_prob[labelled],
        num_classes=num_classes,
        temperature=temperature,
    )
    u = ~labelled
    tu = co_guessed_targets([p1[u], p2[u], q1[u], q2[u]], temperature=temperature)
    return MixMatchBatch(
        inputs=torch.cat([x1[labelled], x2[labelled], x1[u], x2[u]]),
        targets=torch.cat([tx, tx, tu, tu]),
        num_labelled=2 * int(labelled.sum()),
        labelled_inputs=x1[labelled],
        labelled_labels=labels[labelled],
        labelled_share=float(labelled.double().mean()),
    )


def mixmatch_step(
    model: nn.Module,
    i: int,
    optimizer: torch.optim.Optimizer,
    batch: MixMatchBatch,
    *,
    mix_alpha: float,
    weight_u: float,
    generator: torch.Generator | None,
    dist: Collective | None,
    clip_grad: float | None,
    extra_loss: Tensor | None = None,
) -> tuple[float, dict[str, float]]:
    """One MixMatch step of network `i` of `model` (a TwoNetworks, or its DDP wrapper): mix the
    batch with lambda' = max(lambda, 1 - lambda), lambda ~ Beta(mix_alpha, mix_alpha), one
    permutation; the loss :func:`mixmatch_loss` (plus `extra_loss`, computed by the caller
    before this step's forward); back-propagate, clip, step. Returns the loss and
    its terms (``labelled`` too: the labelled share)."""
    lam, perm = mix_coefficients(
        len(batch.inputs), alpha=mix_alpha, generator=generator, shard=None if dist is None else dist.rank
    )
    lam = max(lam, 1 - lam)
    perm = perm.to(batch.inputs.device)
    mixed = lam * batch.inputs + (1 - lam) * batch.inputs[perm]
    mixed_targets = lam * batch.targets + (1 - lam) * batch.targets[perm]
    logits = model(mixed, net=i)
    loss, terms = mixmatch_loss(logits, mixed_targets, batch.num_labelled, weight_u=weight_u)
    if extra_loss is not None:  # a term of the same step (UNICON's contrastive loss)
        loss = loss + extra_loss
    _optimizer_step(model, optimizer, loss, clip_grad)
    terms["labelled"] = batch.labelled_share
    return float(loss.detach()), terms


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor, clip: float | None) -> None:
    """Back-propagate `loss`, refuse a non-finite gradient, clip, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _check_finite_gradients(p for group in optimizer.param_groups for p in group["params"])
    if clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


def _check_pair(model: nn.Module, name: str) -> TwoNetworks:
    pair = unwrap_model(model)
    if not isinstance(pair, TwoNetworks):
        raise ValueError(
            f"method {name!r} trains two networks: its model must be an l2b.methods.TwoNetworks(first, second) "
            f"(got {type(pair).__name__}); l2b train builds one from the config"
        )
    return pair


def _my_rows(index: Tensor, dist) -> Tensor:
    """This replica's rows of the global batch `index` (the shard its inputs hold)."""
    return index if dist is None else torch.tensor_split(index, dist.world_size)[dist.rank]


# -- the methods ---------------------------------------------------------------------------------


class DivideMixWarmup(Method):
    """The warm-up of DivideMix: each network trained alone with cross-entropy, network 0 on the
    first view of the batch and network 1 on the second; for asymmetric noise with the
    confidence penalty (the mean negative entropy of the predictions), as published."""

    networks = 2
    views = {"second": "weak"}
    ddp_options = {"find_unused_parameters": True}
    name = "dividemix-warmup"

    def __init__(self, *, confidence_penalty: bool = False, **common):
        super().__init__(**common)
        self.confidence_penalty = bool(confidence_penalty)

    def step(self, model, optimizer, batch: Batch, ctx: StepContext) -> StepOutput:
        _check_pair(model, "dividemix")
        inputs, labels, dist = batch.inputs, batch.labels, ctx.dist
        model.train()
        losses, logits_all = [], []
        for i, x in enumerate((inputs, batch.views.get("second", inputs))):
            logits = model(x, net=i)
            loss = F.cross_entropy(logits, labels)
            if self.confidence_penalty:
                probs = torch.softmax(logits, dim=1)
                loss = loss + (probs * torch.log(probs.clamp_min(1e-12))).sum(1).mean()
            _optimizer_step(model, optimizer, loss, self.clip_grad)
            losses.append(float(loss.detach()))
            logits_all.append(logits.detach())
        loss = float(np.mean(losses))
        if dist is not None:
            loss = float(dist.sum(torch.tensor([loss], device=inputs.device))[0]) / dist.world_size
        return StepOutput(loss=loss, predictions=((logits_all[0] + logits_all[1]) / 2).argmax(1))


@register_method("dividemix")
class DivideMix(Method):
    """DivideMix: co-divide by a loss mixture, then MixMatch with co-refinement and co-guessing.

    Options (keyword-only; the published defaults):

    lambda_u : float, 25
        Weight of the unlabelled loss (published per data set and noise: CIFAR-10 0 / 25 / 25 / 50
        for 20 / 50 / 80 / 90 % symmetric noise, 0 for 40 % asymmetric; CIFAR-100 25 / 150).
    p_threshold : float, 0.5
        Clean probability above which an example is labelled (0.6 at 90 % noise).
    sharpen_temperature : float, 0.5
        T of the sharpening p^(1/T).
    mix_alpha : float, 4
        MixMatch's Beta(alpha, alpha); lambda' = max(lambda, 1 - lambda).
    rampup_epochs : float, 16
        lambda_u ramps up linearly over this many epochs after the warm-up.
    loss_history : int, 1
        The mixture is fitted to the normalised losses averaged over this many last epochs
        (published: 5 at 90 % noise, else 1).
    confidence_penalty : bool, False
        Add the confidence penalty to the warm-up (published for asymmetric noise).
    clip_grad : float or None
        Clip every step's gradient norm (published: none).

    ``mixup`` does not apply: DivideMix always mixes, with ``mix_alpha``.
    """

    networks = 2
    views = {"second": "weak"}
    ddp_options = {"find_unused_parameters": True}
    options = (
        Option(
            "lambda_u", "float", 25.0, "DivideMix: weight of the unlabelled loss", minimum=0, key="dividemix_lambda_u"
        ),
        Option(
            "p_threshold",
            "float",
            0.5,
            "DivideMix: clean probability above which an example is labelled",
            above=0,
            below=1,
            key="dividemix_threshold",
        ),
        Option(
            "sharpen_temperature", "float", 0.5, "DivideMix: sharpening temperature T", above=0, key="dividemix_sharpen"
        ),
        Option("mix_alpha", "float", 4.0, "DivideMix: MixMatch's Beta(alpha, alpha)", above=0, key="dividemix_alpha"),
        Option(
            "rampup_epochs",
            "float",
            16.0,
            "DivideMix: epochs over which lambda_u ramps up",
            minimum=0,
            key="dividemix_rampup",
        ),
        Option(
            "loss_history",
            "int",
            1,
            "DivideMix: epochs of normalised losses the mixture is fitted to (published: 5 at 90% noise)",
            minimum=1,
            key="dividemix_loss_history",
        ),
        Option(
            "confidence_penalty",
            "bool",
            False,
            "DivideMix: confidence penalty in the warm-up (published for asymmetric noise)",
            key="dividemix_penalty",
        ),
    )

    def __init__(
        self,
        *,
        lambda_u: float = 25.0,
        p_threshold: float = 0.5,
        sharpen_temperature: float = 0.5,
        mix_alpha: float = 4.0,
        rampup_epochs: float = 16.0,
        loss_history: int = 1,
        confidence_penalty: bool = False,
        **common,
    ):
        super().__init__(**common)
        if self.mixup:
            raise ValueError(f"mixup does not apply to {self.name}: it always mixes (MixMatch, with mix_alpha)")
        checks = [
            ("lambda_u", lambda_u >= 0, "must be non-negative"),
            ("p_threshold", 0 < p_threshold < 1, "must be in (0, 1)"),
            ("sharpen_temperature", sharpen_temperature > 0, "must be positive"),
            ("mix_alpha", mix_alpha > 0, "must be positive"),
            ("rampup_epochs", rampup_epochs >= 0, "must be non-negative"),
            ("loss_history", int(loss_history) == loss_history and loss_history >= 1, "must be an int >= 1"),
        ]
        for key, ok, why in checks:
            if not ok:
                raise ValueError(f"{key}={locals()[key]!r} {why}")
        self.lambda_u, self.p_threshold, self.sharpen_temperature = (
            float(lambda_u),
            float(p_threshold),
            float(sharpen_temperature),
        )
        self.mix_alpha, self.rampup_epochs, self.loss_history = (
            float(mix_alpha),
            float(rampup_epochs),
            int(loss_history),
        )
        self.confidence_penalty = bool(confidence_penalty)
        # State (checkpointed): the two networks' clean probabilities (2, N) and their loss history.
        # How far training has come is the trainer's (StepContext.progress).
        self.clean_prob: Tensor | None = None
        self.history: list[Tensor] = []

    def warmup_method(self) -> Method:
        return DivideMixWarmup(confidence_penalty=self.confidence_penalty, clip_grad=self.clip_grad)

    def loss(self, *args, **kwargs):
        raise NotImplementedError("DivideMix makes its own steps (see step)")

    # -- epoch start: the co-divide ---------------------------------------------------------------
    @torch.no_grad()
    def start_epoch(self, model: nn.Module, train, *, epoch: int, device: torch.device) -> dict[str, float]:
        """The co-divide (:func:`co_divide`); returns the labelled shares for the record."""
        pair = _check_pair(model, self.name)
        self.history = (self.history + [network_losses(pair, train, device=device)])[-self.loss_history :]
        self.clean_prob = co_divide(self.history, seed=epoch)
        labelled = (self.clean_prob > self.p_threshold).double().mean(1)
        return {"labelled_share_0": float(labelled[0]), "labelled_share_1": float(labelled[1])}

    def state_dict(self) -> dict[str, Any]:
        return {"clean_prob": self.clean_prob, "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # checkpoints of earlier versions also hold epoch counters: the trainer's now (StepContext)
        self.clean_prob = state.get("clean_prob")
        self.history = list(state.get("history", []))

    def per_example_outputs(self) -> dict[str, np.ndarray]:
        """``clean_prob``: the mean of the two networks' last clean probabilities (N,), a
        label-quality score (DivideMix's own); NaN before the first division."""
        if self.clean_prob is None:
            return {}
        return {"clean_prob": self.clean_prob.double().mean(0).numpy()}

    # -- the step ---------------------------------------------------------------------------------
    def step(self, model, optimizer, batch: Batch, ctx: StepContext) -> StepOutput:
        """Network 0 then network 1, each on the division made by the other (co-divide): for
        each, :func:`mixmatch_targets`, :func:`mixmatch_step`, then :meth:`after_mixmatch`."""
        pair = _check_pair(model, self.name)
        if self.clean_prob is None or batch.index is None or "second" not in batch.views:
            raise ValueError(
                f"{self.name}: a step needs the epoch's division (start_epoch), the batch index and "
                "the batch's second view (Batch.views['second'])"
            )
        inputs, dist = batch.inputs, ctx.dist
        rows = _my_rows(batch.index, dist).cpu()
        weight_u = unlabelled_weight(ctx.progress, lambda_u=self.lambda_u, rampup_epochs=self.rampup_epochs)
        losses, stats = [], {}
        for i in (0, 1):
            w = self.clean_prob[1 - i][rows].to(device=inputs.device, dtype=inputs.dtype)
            mixmatch = mixmatch_targets(
                pair.nets[i],
                pair.nets[1 - i],
                inputs,
                batch.views["second"],
                batch.labels,
                w,
                p_threshold=self.p_threshold,
                temperature=self.sharpen_temperature,
                num_classes=ctx.num_classes,
            )
            loss, terms = mixmatch_step(
                model,
                i,
                optimizer,
                mixmatch,
                mix_alpha=self.mix_alpha,
                weight_u=weight_u,
                generator=ctx.generator,
                dist=dist,
                clip_grad=self.clip_grad,
            )
            losses.append(loss)
            stats.update({f"{k}_{i}": v for k, v in terms.items()})
            stats.update(self.after_mixmatch(i, model, optimizer, mixmatch, batch, ctx))
        loss = float(np.mean(losses))
        if dist is not None:
            loss = float(dist.sum(torch.tensor([loss], device=inputs.device))[0]) / dist.world_size
        stats["weight_u"] = weight_u
        return StepOutput(loss=loss, stats=stats)

    def after_mixmatch(
        self,
        i: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        mixmatch: MixMatchBatch,
        batch: Batch,
        ctx: StepContext,
    ) -> dict[str, float]:
        """What follows network `i`'s MixMatch step, given that step's un-mixed batch; returns
        scalars for the step's record. Nothing for DivideMix; DivideMix-L2B's L2B step after
        network 0. The hook through which a combination with DivideMix adds its own step."""
        return {}


class L2BStep:
    """The L2B step a two-network method adds after network 0's own step, as the L2B authors
    combine L2B with DivideMix, UNICON and C2D (github.com/yuyinzhou/L2B: L2B_DivideMix,
    L2B_UNICON, L2B_C2D): on the step's un-mixed batch (:class:`MixMatchBatch`: both views of the
    labelled and the unlabelled part, their co-refined / co-guessed soft targets),
    :func:`l2b.meta_weights` weighs each input's soft-target cost and its pseudo-label cost (the
    network's own argmax) from a meta batch, jointly normalised over both; one weighted SGD step
    of network 0 follows, its gradient norm clipped to `clip_grad`.

    meta_split : {"clean", "labelled"}
        ``clean`` (the published ``need_clean``): the run's clean meta batch. ``labelled``: no
        clean data; the first view of this batch's labelled part with its given labels (the
        published code then takes a batch of its labelled loader).
    engine, head, tail_modules, normalize, temperature : the L2B options (see
        :class:`l2b.methods.L2B`); every engine, in its in-step form, on network 0.
    clip_grad : float or None
    """

    def __init__(
        self,
        *,
        meta_split: str = "clean",
        engine: str = "forward",
        head: str | None = None,
        tail_modules: int | None = None,
        normalize: str = "org",
        temperature: float = 1.0,
        clip_grad: float | None = 0.8,
    ):
        if meta_split not in ("clean", "labelled"):
            raise ValueError(f"meta_split must be one of clean, labelled, got {meta_split!r}")
        if clip_grad is not None and not clip_grad > 0:  # NaN too
            raise ValueError(f"l2b_clip_grad must be positive or None, got {clip_grad}")
        create_method("l2b", normalize=normalize, temperature=temperature)  # checks them
        # Every engine, in its in-step form, on the view of network 0 (it holds the pair's
        # parameters, as the optimizer does); head / tail look inside network 0 alone.
        self.engine = create_engine(engine, head=head, tail_modules=tail_modules, within="pair.nets.0")
        self.meta_split, self.normalize = meta_split, normalize
        self.temperature, self.clip_grad = temperature, clip_grad

    @property
    def needs_meta(self) -> bool:
        """Whether the step reads the run's clean meta batches."""
        return self.meta_split == "clean"

    def __call__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        mixmatch: MixMatchBatch,
        batch: Batch,
        ctx: StepContext,
        *,
        name: str,
    ) -> dict[str, float]:
        """One L2B step of network 0 of `model` (a TwoNetworks, or its DDP wrapper) on
        `mixmatch`; returns scalars for the step's record (``l2b_skipped`` when this batch
        has no meta batch: ``labelled`` with fewer than two labelled examples)."""
        dist = ctx.dist
        meta_inputs, meta_labels = batch.meta_inputs, batch.meta_labels
        if self.meta_split == "labelled":
            meta_inputs, meta_labels = mixmatch.labelled_inputs, mixmatch.labelled_labels
        if meta_inputs is None or len(meta_inputs) < 2:
            return {"l2b_skipped": 1.0}
        pair = _check_pair(model, name)
        targets = mixmatch.targets
        logits, mw = self.engine.step(
            pair.member(0),
            lambda x: model(x, net=0),  # the real forward, through a DDP wrapper too
            inputs=mixmatch.inputs,
            targets=targets,
            meta_inputs=meta_inputs,
            meta_labels=meta_labels,
            optimizer=optimizer,
            method="l2b",
            collective=dist,
            normalize=self.normalize,
            temperature=self.temperature,
        )
        loss = (mw.alpha * F.cross_entropy(logits, targets, reduction="none")).sum() + (
            mw.beta * F.cross_entropy(logits, mw.pseudo_labels, reduction="none")
        ).sum()
        if dist is not None:  # the weights sum to one over all replicas; DDP averages the gradients
            loss = loss * dist.world_size
        _optimizer_step(model, optimizer, loss, self.clip_grad)
        return {"meta_loss": mw.meta_loss, "all_zero": float(mw.all_zero), "l2b_alpha_share": float(mw.alpha.sum())}


class L2BCombination:
    """What a two-network method with an L2B step after network 0's step adds (mixed in before
    the base method: ``class DivideMixL2B(L2BCombination, DivideMix)``): the engine's options, the
    :class:`L2BStep` built from the L2B options, and the ``after_mixmatch`` hook that runs it."""

    uses_engine = True

    def __init__(
        self,
        *,
        meta_split: str = "clean",
        engine: str = "forward",
        head: str | None = None,
        tail_modules: int | None = None,
        normalize: str = "org",
        temperature: float = 1.0,
        l2b_clip_grad: float | None = DECLARED,
        **options,
    ):
        """The base method's options go to it; the L2B step is built from the rest (its checks
        refuse a bad option by name). `l2b_clip_grad` defaults to the class's declared option
        (the published value of each combination)."""
        super().__init__(**options)
        if l2b_clip_grad is DECLARED:
            l2b_clip_grad = self.declared_default("l2b_clip_grad")
        self.l2b_step = L2BStep(
            meta_split=meta_split,
            engine=engine,
            head=head,
            tail_modules=tail_modules,
            normalize=normalize,
            temperature=temperature,
            clip_grad=l2b_clip_grad,
        )
        self.meta_split, self.engine, self.normalize, self.temperature = meta_split, engine, normalize, temperature
        self.head, self.tail_modules, self.l2b_clip_grad = head, tail_modules, l2b_clip_grad
        self.needs_meta = self.l2b_step.needs_meta

    def after_mixmatch(self, i, model, optimizer, mixmatch, batch, ctx) -> dict[str, float]:
        """The L2B step (:class:`L2BStep`), after network 0's step; nothing after network 1's."""
        return self.l2b_step(model, optimizer, mixmatch, batch, ctx, name=self.name) if i == 0 else {}


@register_method("dividemix-l2b")
class DivideMixL2B(L2BCombination, DivideMix):
    """DivideMix with an L2B step after network 0's MixMatch step, as the L2B authors combine them.

    As in their published code (github.com/yuyinzhou/L2B, L2B_DivideMix/Train_cifar.py): only the
    first network gets the L2B step (:class:`L2BStep`); its inputs are the step's MixMatch inputs
    before mixing (both views of the labelled and unlabelled parts) with their co-refined /
    co-guessed soft targets; meta batch, engine and clip as :class:`L2BStep` says.

    meta_split : {"clean", "labelled"}
        Where the meta batch comes from (see :class:`L2BStep`).
    engine, head, tail_modules, normalize, temperature : the L2B options (see
        :class:`l2b.methods.L2B`); every engine, in its in-step form, on network 0.
    l2b_clip_grad : float or None, 0.8 (published).
    """

    options = (
        Option(
            "meta_split",
            "str",
            "clean",
            "dividemix-l2b: meta batches from the clean meta set, or from DivideMix's labelled part of each batch",
            choices=("clean", "labelled"),
            key="dividemix_meta",
        ),
        Option(
            "l2b_clip_grad",
            "float",
            0.8,
            "dividemix-l2b: gradient-norm clip of the L2B step (published: 0.8)",
            above=0,
            key="dividemix_l2b_clip",
        ),
        *WEIGHT_OPTIONS,
    )
