"""Per-example L2B / L2RW weights from the meta-gradient.

The maths the engines share (the engines themselves, one registered object each, are in
:mod:`l2b.meta.engines`; :func:`l2b.meta.meta_weights` calls them).

Semantics (see docs/meta-gradient.md): for a noisy batch with costs c[0, i] = CE(z_i, y_i) and
c[1, i] = CE(z_i, argmax z_i), the scores are r = -dL_meta(theta'(eps))/d eps at eps = 0, where
theta'(eps) is one step of the real optimizer on sum(eps * c) and L_meta is the mean
cross-entropy of the clean meta batch. Two engines compute r exactly:

- ``reverse``: the published formulation, a differentiable virtual step and a double backward.
- ``forward``: r[k, i] = <s * g, grad_theta c[k, i]> with g = grad L_meta at theta'(0), computed as
  (softmax(z_i) - target_k) . zdot_i where zdot is the forward-mode derivative of the logits
  along s * g. One backward on the meta batch and one dual forward on the noisy batch; exact.

Two cheaper engines restrict the same quantity to part of the network: only that part moves in
the virtual step, the rest is held at theta. Each is exactly ``forward`` for a model whose other
parameters are frozen, and an approximation of the full scores otherwise (its fidelity is
measured by benchmarks/studies/engine_fidelity.py):

- ``head``: the final nn.Linear only, in closed form from the head's input features and the
  softmax (:mod:`l2b.meta.head`); no automatic differentiation.
- ``tail``: the parameters of the last k blocks (``tail_modules=k``, :mod:`l2b.meta.tail`), by the
  forward engine with tangents on those parameters only; k = every block is ``forward``.

Neither engine changes the model's parameters or buffers (BatchNorm statistics included): every
virtual forward runs on cloned buffers through torch.func.functional_call.

Data parallelism: with a :class:`~l2b.meta.collective.Collective` (keyword ``collective``) each
replica passes its shard of the noisy batch and its shard of the meta batch; g becomes the
gradient of the mean cross-entropy over the *global* meta batch (local gradients of the summed
loss, summed over the replicas in one reduction, divided by the global meta count) and the
normaliser is taken over every replica. Each replica then holds its columns of the weights one
process computes on the concatenated batches: exactly, for models without coupling between
samples. Train-mode BatchNorm couples the samples of a batch; each replica then normalises with
its own shard's statistics (those of the forward it runs), as plain DistributedDataParallel does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Collection, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .collective import Collective, global_any, sum_tensors
from .dual_rules import dual_rules
from .head import capture_head, head_gradient
from .normalize import normalize_scores
from .virtual_step import virtual_step

METHODS = ("l2b", "l2rw")
"""The methods whose weights :func:`meta_weights` computes: ``"l2b"`` (a weight on the given
label and one on the pseudo-label of every example) and ``"l2rw"`` (the given label only)."""
ROWS = {"l2b": 2, "l2rw": 1}
"""Rows of the weights :func:`meta_weights` returns, per method: ``(2, B)`` for ``"l2b"`` (given
label, pseudo-label), ``(1, B)`` for ``"l2rw"``."""


@dataclass(frozen=True)
class MetaWeights:
    """Result of :func:`meta_weights` for a batch of B examples. With per-position labels
    (segmentation: labels (B, H, W), logits (B, K, H, W)) every shape below gains the positions
    ``...`` = (H, W): one weight per pixel and cost, normalised jointly over all of them.

    Attributes
    ----------
    alpha : Tensor, shape (B,) or (B, ...)
        Weight of each example's observed-label cost.
    beta : Tensor, shape (B,) or (B, ...)
        Weight of each example's pseudo-label cost (all zero for L2RW).
    raw : Tensor, shape (2, B) or (2, B, ...)
        Negative meta-gradient with respect to the perturbations, before normalisation. Row 0 is
        the observed label, row 1 the pseudo-label (zeros for L2RW, which has no such term).
    pseudo_labels : Tensor, shape (B,) or (B, ...), int64
        argmax of the model's train-mode logits on the noisy batch.
    meta_loss : float
        Mean cross-entropy of the meta batch at theta'(0).
    all_zero : bool
        True when no weight is positive (``org`` normalisation with no positive score).
    logits : Tensor, shape (B, K) or (B, K, ...)
        The train-mode logits of the noisy batch at theta (detached).
    """

    alpha: Tensor
    beta: Tensor
    raw: Tensor
    pseudo_labels: Tensor
    meta_loss: float
    all_zero: bool
    logits: Tensor


def without_autocast(like: Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off on `like`'s device type. The meta-gradient runs inside it, so under a
    bf16 autocast region (``precision: bf16``) the weights are still computed in the inputs' and
    parameters' own dtype: they do not change with the precision of the rest of the step."""
    return torch.autocast(like.device.type, enabled=False)


def _check_inputs(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    meta_inputs: Tensor,
    meta_labels: Tensor,
    optimizer: torch.optim.Optimizer,
    method: str,
    collective: Collective | None,
    *,
    check_finite: bool = True,
) -> tuple[Tensor, Tensor, tuple[int | None, int | None]]:
    """Refuse what meta_weights cannot compute weights from, by a ValueError naming the argument
    and the value. Shapes, dtypes and the trainable parameters cost nothing; the finiteness of the
    inputs and the range of the labels are read in one reduction per tensor and one transfer.

    Returns the labels as int64 (class indices of another integer dtype are converted) and the
    largest class index of `labels` and of `meta_labels` (None: probabilities, or none), which
    :func:`check_classes` compares with K once the engine has the logits.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, t in (("inputs", inputs), ("labels", labels), ("meta_inputs", meta_inputs), ("meta_labels", meta_labels)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    # Labels are class indices of one shape per example, (B,) for classification or (B, H, W)
    # per pixel, matched by meta_labels (M, ...); or probabilities with the class axis second.
    if meta_labels.dim() < 1 or labels.dim() not in (meta_labels.dim(), meta_labels.dim() + 1):
        raise ValueError(
            "labels must be class indices (B, ...) of the meta labels' shape per example, or probabilities "
            "(B, K, ...); meta_labels must be class indices (M, ...); got labels of shape "
            f"{tuple(labels.shape)} and meta_labels of shape {tuple(meta_labels.shape)}"
        )
    if inputs.dim() < 1 or labels.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"labels has {labels.shape[0]} rows but inputs has {inputs.shape[0] if inputs.dim() else 'none'} "
            f"(inputs of shape {tuple(inputs.shape)}): pass one label per example"
        )
    if meta_inputs.dim() < 1 or meta_labels.shape[0] != meta_inputs.shape[0]:
        raise ValueError(
            f"meta_labels has {meta_labels.shape[0]} rows but meta_inputs has "
            f"{meta_inputs.shape[0] if meta_inputs.dim() else 'none'} (meta_inputs of shape "
            f"{tuple(meta_inputs.shape)}): pass one label per meta example"
        )
    if collective is None:  # under data parallelism a replica's shard may be empty (checked globally)
        for name, t in (("inputs", inputs), ("meta_inputs", meta_inputs)):
            if t.shape[0] == 0:
                what = "noisy batch" if name == "inputs" else "meta batch"
                raise ValueError(f"{name} is empty (shape {tuple(t.shape)}): the {what} needs at least one example")
    probabilities = labels.dim() == meta_labels.dim() + 1 and labels.is_floating_point()
    if not probabilities and labels.dim() != meta_labels.dim():
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} and meta_labels of shape {tuple(meta_labels.shape)}: class "
            "indices have one shape per example for both (probabilities (B, K, ...) must be floating point)"
        )
    labels = labels if probabilities else _class_indices("labels", labels)
    meta_labels = _class_indices("meta_labels", meta_labels)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if not trainable:
        raise ValueError(
            "model has no trainable parameter (none with requires_grad=True): the weights come from the "
            "optimizer's step on them; unfreeze at least the output layer"
        )
    groups = getattr(optimizer, "param_groups", None)  # another kind of object: virtual_step says so
    if groups is not None and not any(id(p) in trainable for g in groups for p in g["params"]):
        raise ValueError(
            "the optimizer updates none of the model's trainable parameters: pass the optimizer of the real "
            "step, built on model.parameters()"
        )
    # One transfer for every value read: sums (NaN and Inf propagate) and the label extremes.
    checks: list[tuple[str, Tensor]] = []
    for name, t in (("inputs", inputs), ("meta_inputs", meta_inputs), ("labels", labels)):
        if t.is_floating_point() and t.numel():
            checks.append((name, t.sum()))
    for name, t in (("labels", labels), ("meta_labels", meta_labels)):
        if not t.is_floating_point() and t.numel():
            checks += [(name + " min", t.min()), (name + " max", t.max())]
    read = dict(zip((n for n, _ in checks), torch.stack([v.float() for _, v in checks]).tolist())) if checks else {}
    for name, t in (("inputs", inputs), ("meta_inputs", meta_inputs), ("labels", labels)):
        if check_finite and name in read and not math.isfinite(read[name]):
            _refuse_non_finite(name, t)  # or, the sum having overflowed, every value is finite
    for name, t in (("labels", labels), ("meta_labels", meta_labels)):
        if read.get(name + " min", 0.0) < 0:
            where = _first(t < 0)
            raise ValueError(
                f"{name}[{where}]={int(t[(t < 0)].reshape(-1)[0])} is negative: class indices are in [0, K)"
            )
    return labels, meta_labels, (_max_label(read, "labels"), _max_label(read, "meta_labels"))


def _class_indices(name: str, labels: Tensor) -> Tensor:
    """1-D labels as int64 class indices; a float, complex or bool tensor is refused."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"{name} must be integer class indices in [0, K), got dtype {labels.dtype} (shape "
            f"{tuple(labels.shape)}); convert them with .long(), or pass probabilities of shape (B, K) as labels"
        )
    return labels if labels.dtype == torch.int64 else labels.long()


def _first(mask: Tensor) -> str:
    """The index of `mask`'s first True entry, as written in a subscript: ``3`` or ``0, 5, 7``."""
    return ", ".join(str(int(i)) for i in mask.nonzero()[0])


def _max_label(read: dict[str, float], name: str) -> int | None:
    value = read.get(name + " max")
    return None if value is None else int(value)


def _refuse_non_finite(name: str, t: Tensor) -> None:
    bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
    count = int(bad.sum())
    if count:
        raise ValueError(
            f"{name}: example {int(bad.nonzero()[0])} holds NaN or Inf values ({count} of {t.shape[0]} examples); "
            "the weights need finite inputs"
        )


def check_classes(name: str, labels: Tensor, largest: int | None, logits: Tensor) -> None:
    """Refuse class indices the logits (N, K, ...) have no column for, or probabilities of another
    width, or labels whose positions are not the logits' (per-pixel labels (N, H, W) against
    logits (N, K, H', W')), before any loss reads them (torch would raise an index error on the
    CPU and a device-side assert on CUDA). `largest` is the labels' largest value, read by
    :func:`_check_inputs`."""
    k = logits.shape[1]
    positions = tuple(logits.shape[2:])
    if labels.is_floating_point():
        if labels.shape[1] != k:
            raise ValueError(f"{name} has {labels.shape[1]} columns but the model returns {k} logits per example")
        if tuple(labels.shape[2:]) != positions:
            raise ValueError(f"{name} of shape {tuple(labels.shape)} do not match the logits {tuple(logits.shape)}")
        return
    if tuple(labels.shape[1:]) != positions:
        raise ValueError(
            f"{name} have shape {tuple(labels.shape)} but the model returns logits of shape {tuple(logits.shape)}: "
            "one class index per output position"
        )
    if largest is not None and largest >= k:
        raise ValueError(
            f"{name}[{_first(labels >= k)}]={int(labels[labels >= k].reshape(-1)[0])} is outside [0, {k}): the model "
            f"returns {k} logits per example ({int((labels >= k).sum())} such labels)"
        )


def clone_buffers(model: nn.Module) -> dict[str, Tensor]:
    return {n: b.clone() for n, b in model.named_buffers()}


def _target_grad(probs: Tensor, target: Tensor) -> Tensor:
    """dCE/dz = softmax(z) - target, (B, K, ...), for class indices (B, ...) or probabilities
    (B, K, ...)."""
    if not target.is_floating_point():
        return probs - F.one_hot(target, probs.shape[1]).movedim(-1, 1).to(probs.dtype)
    return probs - target.to(probs.dtype)


def label_positions(labels: Tensor) -> int:
    """The labelled positions in `labels`, what a mean cross-entropy divides by: class indices
    (N, *S) hold N * prod(S) (one per example; one per pixel of a mask); probabilities
    (N, K, *S) the same without the class axis."""
    return labels.numel() // labels.shape[1] if labels.is_floating_point() else labels.numel()


def global_meta_gradient(
    meta_loss_sum: Tensor, count: int, wrt: list[Tensor], collective: Collective
) -> tuple[list[Tensor], float]:
    """Gradient of the mean meta CE over every replica's meta shard, and that mean.

    `meta_loss_sum` is this replica's summed CE over its `count` labelled positions
    (:func:`label_positions`: its meta examples, times their pixels for masks). One reduction
    carries the local gradients, the loss sum and the count; a parameter the local loss does not
    reach contributes zeros, so every replica reduces the same layout.
    """
    grads = torch.autograd.grad(meta_loss_sum, wrt, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, wrt)]
    tail = torch.stack([meta_loss_sum.detach(), meta_loss_sum.new_tensor(float(count))])
    *summed, tail = sum_tensors(collective, [g.detach() for g in grads] + [tail])
    total = float(tail[1])
    if total <= 0:
        raise ValueError("the meta batch is empty on every replica")
    return [g / total for g in summed], float(tail[0]) / total


def meta_tangents(
    model: nn.Module,
    meta_inputs: Tensor,
    meta_labels: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    collective: Collective | None = None,
    params: Collection[str] | None = None,
    meta_label_max: int | None = None,
) -> tuple[dict[str, Tensor], float]:
    """The direction s * g along which the forward engine differentiates the noisy logits.

    g = grad of the meta loss (mean CE of the meta batch, train mode) at theta'(0), the virtual
    step with a zero gradient; s is the virtual step's gradient scale (lr times the momentum /
    nesterov factor) of each parameter. Runs on cloned buffers: the model is not changed.

    With a `collective`, `meta_inputs` (M_r, ...) and `meta_labels` (M_r,) are this replica's
    shard and g is the gradient of the mean CE over all replicas' shards (one reduction; shards
    may differ in size). Every replica gets the same tangents.

    With `params` (parameter names), only those move in the virtual step and get tangents; the
    others are held at theta, as if frozen (``engine="tail"``). The meta backward then stops at
    the first of them: the layers before it build no graph.

    `meta_label_max`: the largest meta label, when the caller has read it (:func:`meta_weights`
    does, with its other input checks): a label the meta logits have no column for is then
    refused by a ValueError naming it, before the loss reads it.

    Returns
    -------
    tangents : dict[str, Tensor]
        Parameter name -> tensor shaped like that parameter. Parameters the optimizer does not
        update, or the meta loss does not reach, are absent (zero); with a collective, a parameter
        no replica reaches is present as zeros.
    meta_loss : float
        The meta loss at theta'(0) (over all replicas' meta shards).
    """
    step = virtual_step(model, optimizer)
    if params is not None:
        step = step.restrict(params)
    values = {n: p.detach() for n, p in model.named_parameters()}
    leaves = {n: t.requires_grad_() for n, t in step.base(values).items()}
    meta_logits = functional_call(model, {**values, **leaves, **clone_buffers(model)}, (meta_inputs,))
    check_classes("meta_labels", meta_labels, meta_label_max, meta_logits)
    scale = step.scale()
    if collective is None:
        meta_loss = F.cross_entropy(meta_logits, meta_labels)
        grads = torch.autograd.grad(meta_loss, list(leaves.values()), allow_unused=True)
        tangents = {n: scale[n] * g for n, g in zip(leaves, grads) if g is not None}
        return tangents, float(meta_loss.detach())
    loss_sum = F.cross_entropy(meta_logits, meta_labels, reduction="sum")
    grads, meta_loss = global_meta_gradient(loss_sum, label_positions(meta_labels), list(leaves.values()), collective)
    return {n: scale[n] * g for n, g in zip(leaves, grads)}, meta_loss


def head_names(head: str) -> tuple[str, str]:
    return (f"{head}.weight", f"{head}.bias") if head else ("weight", "bias")


def head_tangents(
    model: nn.Module,
    meta_inputs: Tensor,
    meta_labels: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    head: str,
    collective: Collective | None = None,
    meta_label_max: int | None = None,
) -> tuple[dict[str, Tensor], float]:
    """:func:`meta_tangents` for ``engine="head"``: s * g over the head's weight and bias only.

    One forward of the meta batch without graph, the backbone at theta and the head `head` (a
    name from :func:`l2b.meta.find_head`) at theta'(0), on cloned buffers; g in closed form from
    the head's input features (:func:`l2b.meta.head.head_gradient`). With a `collective`, the sums
    over the local meta shard are added over the replicas in one reduction, then divided by the
    global count, as :func:`meta_tangents` does. `meta_label_max`: as in :func:`meta_tangents`.

    Returns
    -------
    tangents : dict[str, Tensor]
        ``{head}.weight`` (K, D) and ``{head}.bias`` (K,), each present when the optimizer
        updates it.
    meta_loss : float
        The mean meta cross-entropy at theta'(0) (over all replicas' meta shards).
    """
    w, b = head_names(head)
    step = virtual_step(model, optimizer).restrict((w, b))
    values = {n: p.detach() for n, p in model.named_parameters()}
    with torch.no_grad(), capture_head(model, head) as cap:
        meta_logits = functional_call(model, {**values, **step.base(values), **clone_buffers(model)}, (meta_inputs,))
    check_classes("meta_labels", meta_labels, meta_label_max, meta_logits)
    grad_w, grad_b, loss = head_gradient(cap.features(), meta_logits, meta_labels)
    count = loss.new_tensor(float(meta_labels.shape[0]))
    if collective is not None:
        grad_w, grad_b, tail = sum_tensors(collective, [grad_w, grad_b, torch.stack([loss, count])])
        loss, count = tail[0], tail[1]
    if not float(count) > 0:
        raise ValueError("the meta batch is empty" + ("" if collective is None else " on every replica"))
    grads = {w: grad_w / count, b: grad_b / count}
    scale = step.scale()
    return {n: scale[n] * grads[n] for n in step.names}, float(loss / count)


def dual_forward(
    model: nn.Module, inputs: Tensor, tangents: dict[str, Tensor], *, real_step: bool = False
) -> tuple[Tensor, Tensor]:
    """Logits z (B, K) and their forward-mode derivative zdot (B, K) along `tangents`.

    With ``real_step=False`` the forward runs on detached parameters and cloned buffers: no graph,
    no side effects. With ``real_step=True`` it is the real training forward: z keeps its autograd
    graph to the parameters (back-propagate it for the real step) and BatchNorm running
    statistics are updated once, as by ``model(inputs)``.
    """
    params = dict(model.named_parameters()) if real_step else {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers()) if real_step else clone_buffers(model)
    # The tangents of BatchNorm, conv2d and linear layers come from l2b.meta.dual_rules: outside
    # autograd (with real_step torch would keep them in the graph until the backward), and
    # BatchNorm's in closed form (torch's rule costs several times the layer's forward).
    with fwAD.dual_level(), dual_rules():
        duals = {n: fwAD.make_dual(p, tangents[n]) if n in tangents else p for n, p in params.items()}
        logits, zdot = fwAD.unpack_dual(functional_call(model, {**duals, **buffers}, (inputs,)))
    if zdot is None:  # no parameter moves the logits
        zdot = torch.zeros_like(logits)
    return logits, zdot.detach()


_PSEUDO: ContextVar[Callable[[Tensor], Tensor] | None] = ContextVar("l2b_pseudo_labels", default=None)


@contextlib.contextmanager
def pseudo_labels_from(fn: Callable[[Tensor], Tensor] | None) -> Iterator[None]:
    """Within the block, every engine takes the pseudo-labels of the second cost row from
    ``fn(logits)`` (logits (B, K, ...) at theta, detached -> class indices (B, ...)) instead of
    their argmax: the L2B segmentation variant's pseudo-mask averaged over five views of each
    image (:mod:`l2b.segmentation.views`). ``None``: the argmax."""
    token = _PSEUDO.set(fn)
    try:
        yield
    finally:
        _PSEUDO.reset(token)


def pseudo_labels(logits: Tensor) -> Tensor:
    """The pseudo-labels of the noisy batch from its logits (B, K, ...) at theta: their argmax
    over the classes, or what :func:`pseudo_labels_from` set."""
    fn = _PSEUDO.get()
    return logits.argmax(dim=1) if fn is None else fn(logits.detach())


@torch.no_grad()
def scores_from_jvp(logits: Tensor, zdot: Tensor, labels: Tensor, *, rows: int = 2) -> tuple[Tensor, Tensor]:
    """Raw scores (2, B, ...) and pseudo-labels (B, ...) from logits (B, K, ...) and their
    derivative zdot of the same shape: one score per example and output position (per pixel, for
    logits (B, K, H, W)).

    r[0, i] = (softmax(z_i) - target_i) . zdot_i over the class axis, r[1, i] the same with the
    pseudo-label argmax(z_i) (or :func:`pseudo_labels_from`'s) as target (left zero when
    rows == 1). `labels` are class indices (B, ...) or probabilities (B, K, ...).
    """
    probs = torch.softmax(logits, dim=1)
    pseudo = pseudo_labels(logits)
    raw = torch.zeros(2, *pseudo.shape, dtype=logits.dtype, device=logits.device)
    raw[0] = (_target_grad(probs, labels) * zdot).sum(dim=1)
    if rows == 2:
        raw[1] = (_target_grad(probs, pseudo) * zdot).sum(dim=1)
    return raw, pseudo


def weights_from_scores(
    raw: Tensor,
    pseudo: Tensor,
    logits: Tensor,
    meta_loss: float,
    *,
    rows: int,
    normalize: str,
    temperature: float,
    collective: Collective | None = None,
) -> MetaWeights:
    """Normalise the first `rows` rows of raw (2, B) jointly into a :class:`MetaWeights`.

    With a `collective`, jointly over every replica's columns; ``all_zero`` is then global.
    """
    w = normalize_scores(raw[:rows], normalize=normalize, temperature=temperature, collective=collective)
    alpha = w[0]
    beta = w[1] if rows == 2 else torch.zeros_like(alpha)
    all_zero = not global_any(bool((w > 0).any()), collective, device=w.device)
    return MetaWeights(
        alpha=alpha,
        beta=beta,
        raw=raw,
        pseudo_labels=pseudo,
        meta_loss=meta_loss,
        all_zero=all_zero,
        logits=logits.detach(),
    )
