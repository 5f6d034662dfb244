"""Turning raw meta-gradient scores into example weights."""

from __future__ import annotations

import torch
from torch import Tensor

from ..names import NORMALIZATIONS
from .collective import Collective

ORG_EPS = 1e-10  # the published normaliser's guard; it also defines the all-zero case


def normalize_scores(
    raw: Tensor, *, normalize: str = "org", temperature: float = 1.0, collective: Collective | None = None
) -> Tensor:
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
    collective : Collective or None
        Under data parallelism, `raw` holds this replica's columns of the global (R, B_global)
        scores and the normaliser is taken over every replica (``org`` and ``sigmoid``: a summed
        total; ``softmax``: the global maximum, then the summed exponentials), so the weights are
        this replica's columns of the single-process weights of the concatenated batch. ``None``:
        one process.

    Returns
    -------
    Tensor, shape (R, B)
        Non-negative weights summing to one over all entries (or all zero, ``org`` only); with a
        collective, summing to one over all entries of all replicas.
    """
    flat = raw.reshape(-1)
    if collective is None:

        def total(t: Tensor) -> Tensor:
            return t.sum()
    else:

        def total(t: Tensor) -> Tensor:
            return collective.sum(t.sum().reshape(1))

    if normalize == "org":
        w = flat.clamp(min=0)
        w = w / (total(w) + ORG_EPS)
    elif normalize == "softmax":
        if not temperature > 0:
            raise ValueError(f"temperature must be positive for softmax normalisation, got {temperature}")
        if collective is None:
            w = torch.softmax(flat / temperature, dim=0)
        else:
            z = flat / temperature
            # -inf joins the local maximum so that an empty shard takes part in the reduction
            top = collective.max(torch.cat([z, z.new_full((1,), float("-inf"))]).max().reshape(1))
            e = torch.exp(z - top)
            w = e / total(e)
    elif normalize == "sigmoid":
        # sigmoid(r) / sum(sigmoid(r)), in the log domain: when every score is hugely negative the
        # sigmoids underflow to zero and the plain ratio would be 0 / 0.
        ls = torch.nn.functional.logsigmoid(flat)
        local_top = torch.cat([ls, ls.new_full((1,), float("-inf"))]).max().reshape(1)
        top = local_top if collective is None else collective.max(local_top)
        e = torch.exp(ls - top)
        w = e / total(e)
    else:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    return w.view_as(raw)
