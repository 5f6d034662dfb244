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

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
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
