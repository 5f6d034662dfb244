"""Turning raw meta-gradient scores into example weights."""
from __future__ import annotations

import torch
from torch import Tensor

NORMALIZATIONS = ("org", "softmax", "sigmoid")
ORG_EPS = 1e-10  # the published normaliser's guard; it also defines the all-zero case


def normalize_scores(raw: Tensor, *, normalize: str = "org", temperature: float = 1.0) -> Tensor:
    """Normalise raw scores jointly over all their entries.

    Parameters
    ----------
    raw : Tensor, shape (R, B)
        Negative meta-gradients, R = 2 rows (observed label, pseudo-label) for L2B, 1 for L2RW.
    normalize : {"org", "softmax", "sigmoid"}
        - ``org``: ``max(raw, 0) / (sum(max(raw, 0)) + 1e-10)``. When no score is positive every
          weight is exactly zero (the step then has zero loss; callers count it).
        - ``softmax``: ``softmax(raw / temperature)`` over all R*B entries.
        - ``sigmoid``: ``sigmoid(raw) / sum(sigmoid(raw))``.
    temperature : float
        Only for ``softmax``; must be positive.

    Returns
    -------
    Tensor, shape (R, B)
        Non-negative weights summing to one over all entries (or all zero, ``org`` only).
    """
    flat = raw.reshape(-1)
    if normalize == "org":
        w = flat.clamp(min=0)
        w = w / (w.sum() + ORG_EPS)
    elif normalize == "softmax":
        if not temperature > 0:
            raise ValueError(f"temperature must be positive for softmax normalisation, got {temperature}")
        w = torch.softmax(flat / temperature, dim=0)
    elif normalize == "sigmoid":
        s = torch.sigmoid(flat)
        w = s / s.sum()
    else:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    return w.view_as(raw)
