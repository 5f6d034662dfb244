"""The stand-alone entry point: L2B / L2RW weights for one noisy batch, by any registered engine."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .collective import Collective
from .engine import ROWS, MetaWeights, _check_inputs, weights_from_scores, without_autocast
from .engines import Engine, create_engine

__all__ = ["meta_weights"]


def meta_weights(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    meta_inputs: Tensor,
    meta_labels: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    method: str = "l2b",
    engine: str | Engine = "forward",
    normalize: str = "org",
    temperature: float = 1.0,
    collective: Collective | None = None,
    head: str | None = None,
    tail_modules: int | None = None,
    check_finite: bool = True,
) -> MetaWeights:
    """Compute L2B (or L2RW) example weights for one noisy batch.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits of shape (N, K), or per-position logits (N, K, ...) (a
        segmentation network's (N, K, H, W): the weights are then per pixel). Run in train mode
        for every virtual forward (restored afterwards); its parameters and buffers are left unchanged. Parameters with
        ``requires_grad=False`` (a frozen backbone), and any the optimizer does not hold, are held
        fixed in the virtual step, as the real step leaves them; the weights are then those of
        training the rest. A model with no trainable parameter is refused.
    inputs : Tensor, shape (B, ...)
        Noisy training batch, B >= 1, finite.
    labels : Tensor, shape (B,) integer or (B, K) float; per position (B, ...) or (B, K, ...)
        Observed labels, as class indices in [0, K) or as probability targets (e.g. after mixup).
    meta_inputs : Tensor, shape (M, ...)
        Clean meta batch, M >= 1, finite.
    meta_labels : Tensor, shape (M,) integer, or (M, ...) per position
        Clean meta labels, class indices in [0, K).
    optimizer : torch.optim.SGD
        The optimizer of the real step; its lr, momentum buffers, dampening, nesterov, maximize and
        weight decay define the virtual step. It is read, never stepped. It must update at least
        one of the model's trainable parameters.
    method : {"l2b", "l2rw"}
        ``l2b`` weighs observed and pseudo-label costs jointly; ``l2rw`` only the observed one.
    engine : {"forward", "fused", "reverse", "head", "tail"} or Engine
        A registered engine's name (:mod:`l2b.meta.engines`) or an engine object from
        :func:`~l2b.meta.engines.create_engine` (then `head` and `tail_modules` are its own).
        ``forward`` (default) is the exact forward-mode formulation; ``reverse`` the published
        double-backward one, kept as the reference; ``fused`` is ``forward`` here (it differs
        only inside a training step, see :class:`l2b.methods.L2B`). ``head``: the meta-gradient
        over the final nn.Linear only, in closed form (:mod:`l2b.meta.head`); ``tail``: over the
        last `tail_modules` blocks only (:mod:`l2b.meta.tail`). Both hold the rest of the network
        at theta: exact for a model trained only there, cheaper approximations otherwise.
    normalize : {"org", "softmax", "sigmoid"}
        See :func:`l2b.meta.normalize_scores`; applied jointly over all 2B (L2B) or B (L2RW) scores.
    temperature : float
        Softmax temperature.
    collective : Collective or None
        Data parallelism (see the module docstring): the batches are this replica's shards, the
        model is the bare module (not a DistributedDataParallel wrapper); the weights returned
        are this replica's entries of the weights of the concatenated batches, which sum to one
        over all replicas, and ``meta_loss`` / ``all_zero`` are global. ``None``: one process.
    head : str or None
        ``engine="head"`` only: the name of the output nn.Linear (as in ``model.named_modules()``,
        e.g. ``"fc"``). ``None``: the model's last nn.Linear. Either way it must produce the
        model's output (checked on the forward), or a ValueError says what to do.
    tail_modules : int
        ``engine="tail"`` only, required: k, the number of last blocks with trainable parameters
        (:func:`l2b.meta.model_blocks`).

    check_finite : bool
        Refuse NaN or Inf in `inputs` / `meta_inputs` (default). The trainer passes False: it
        checks every input before training and skips a step whose loss or gradient is not finite
        (a non-finite batch made by augmentation, say) instead of stopping.

    Returns
    -------
    MetaWeights

    Raises
    ------
    ValueError
        Naming the argument and the value: labels that are not integer class indices in [0, K)
        (K read off the logits the engine computes anyway) or probabilities (B, K); a batch and
        its labels of different lengths; an empty noisy or meta batch (without a `collective`:
        under data parallelism a shard may be empty, the meta batch not on every replica); NaN
        or Inf in `inputs` or `meta_inputs` (the first such example named); a model without
        trainable parameters, or an optimizer that updates none of them. These checks read the
        inputs once (a sum each) and the labels' extremes, in one transfer from the device.
    TypeError
        An argument that is not a tensor, or an optimizer other than torch.optim.SGD.
    """
    if isinstance(engine, Engine):
        if head is not None or tail_modules is not None:
            raise ValueError(
                "head and tail_modules are the options of an engine named by string; an Engine object has its own"
            )
        eng = engine
    else:
        eng = create_engine(engine, head=head, tail_modules=tail_modules)
    labels, meta_labels, bounds = _check_inputs(
        model, inputs, labels, meta_inputs, meta_labels, optimizer, method, collective, check_finite=check_finite
    )
    rows = ROWS[method]
    was_training = model.training
    model.train()
    try:
        with without_autocast(inputs):
            raw, pseudo, logits, meta_loss = eng.scores(
                model,
                inputs=inputs,
                labels=labels,
                meta_inputs=meta_inputs,
                meta_labels=meta_labels,
                optimizer=optimizer,
                rows=rows,
                collective=collective,
                bounds=bounds,
            )
            return weights_from_scores(
                raw,
                pseudo,
                logits,
                meta_loss,
                rows=rows,
                normalize=normalize,
                temperature=temperature,
                collective=collective,
            )
    finally:
        model.train(was_training)
