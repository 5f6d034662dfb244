"""Overlap metrics of predicted and reference masks (class-index maps).

Dice = 2 |P ∩ G| / (|P| + |G|) and IoU = |P ∩ G| / |P ∪ G| per image and class; a class absent
from both masks scores 1 (nothing to find, nothing found). Background (class 0) is left out of
the means: for binary masks the figure is the foreground's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["case_dice", "dice_per_image", "iou_per_image"]


def _counts(pred: Tensor | np.ndarray, target: Tensor | np.ndarray, num_classes: int):
    """Per image and class: |P ∩ G|, |P|, |G|, each (N, K) float64, from masks (N, H, W)."""
    p = torch.as_tensor(np.asarray(pred) if not isinstance(pred, Tensor) else pred).long()
    g = torch.as_tensor(np.asarray(target) if not isinstance(target, Tensor) else target).long().to(p.device)
    if p.shape != g.shape:
        raise ValueError(f"predicted masks of shape {tuple(p.shape)} and reference masks of shape {tuple(g.shape)}")
    n = p.shape[0]
    p1 = torch.nn.functional.one_hot(p.reshape(n, -1), num_classes).double()  # (N, HW, K)
    g1 = torch.nn.functional.one_hot(g.reshape(n, -1), num_classes).double()
    return (p1 * g1).sum(1), p1.sum(1), g1.sum(1)


def dice_per_image(pred, target, num_classes: int) -> Tensor:
    """Dice of each image and foreground class: (N, K - 1) float64 from masks (N, H, W) of class
    indices in [0, K); 1 where a class is absent from both."""
    inter, p, g = _counts(pred, target, num_classes)
    denom = p + g
    dice = torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))
    return dice[:, 1:]


def iou_per_image(pred, target, num_classes: int) -> Tensor:
    """IoU of each image and foreground class: (N, K - 1) float64; 1 where a class is absent from both."""
    inter, p, g = _counts(pred, target, num_classes)
    union = p + g - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))[:, 1:]


def case_dice(pred, target, cases: np.ndarray, num_classes: int) -> dict[str, float]:
    """Dice per 3-D case (the slices of one volume pooled, as the segmentation variant of L2B
    reports it), mean over foreground classes: case id -> Dice. `cases` (N,) names each slice's
    case."""
    inter, p, g = _counts(pred, target, num_classes)
    cases = np.asarray(cases)
    out = {}
    for case in dict.fromkeys(cases.tolist()):
        rows = torch.as_tensor(np.flatnonzero(cases == case))
        i, s = inter[rows].sum(0)[1:], (p[rows] + g[rows]).sum(0)[1:]
        out[str(case)] = float(torch.where(s > 0, 2 * i / s.clamp_min(1), torch.ones_like(s)).mean())
    return out
