"""The optimizer's virtual step theta'(eps) and its Jacobian with respect to the gradient.

Both meta-gradient engines need one step of the *real* optimizer taken on the perturbed loss
L_eps = sum_k sum_i eps[k, i] * c[k, i]. For torch.optim.SGD that step is affine in the gradient:

    theta'(grad) = base - scale * grad,

where `base` is the step taken with a zero gradient (weight decay and momentum still move the
parameters) and `scale` is a positive number per parameter (lr times a factor from momentum,
dampening and nesterov). At eps = 0 the gradient of L_eps is zero, so theta'(0) = base.

This module knows nothing about data, models or methods: it reads the optimizer's param groups
and state and returns tensors keyed by parameter name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

SUPPORTED_OPTIMIZERS = ("torch.optim.SGD",)


@dataclass(frozen=True)
class SGDHyper:
    """The hyper-parameters of one SGD param group plus one parameter's momentum buffer."""

    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool
    maximize: bool
    momentum_buffer: Tensor | None

    @property
    def grad_scale(self) -> float:
        """s such that d theta' / d grad = -s (the update is affine in the gradient)."""
        c = 1.0
        if self.momentum != 0.0:
            # First step: buf = grad (no dampening); later: buf = mu*m + (1 - dampening)*grad.
            db = 1.0 if self.momentum_buffer is None else 1.0 - self.dampening
            c = 1.0 + self.momentum * db if self.nesterov else db
        return (-1.0 if self.maximize else 1.0) * self.lr * c


def sgd_update(param: Tensor, grad: Tensor, hyper: SGDHyper) -> Tensor:
    """One torch.optim.SGD update, out of place and differentiable in `param` and `grad`.

    Mirrors torch.optim.SGD's single-tensor code path (maximize, weight decay, momentum with
    dampening and the first-step buffer initialisation, nesterov). Shapes: all like `param`.
    """
    d = -grad if hyper.maximize else grad
    if hyper.weight_decay != 0.0:
        d = d + hyper.weight_decay * param
    if hyper.momentum != 0.0:
        m = hyper.momentum_buffer
        buf = d if m is None else hyper.momentum * m + (1.0 - hyper.dampening) * d
        d = d + hyper.momentum * buf if hyper.nesterov else buf
    return param - hyper.lr * d


@dataclass(frozen=True)
class VirtualStep:
    """theta'(grad) = base - scale * grad for every parameter the optimizer updates.

    Attributes
    ----------
    hyper : dict[str, SGDHyper]
        Per parameter name, what the real optimizer would use for it.
    """

    hyper: dict[str, SGDHyper]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.hyper)

    def base(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """theta'(0) for the updated parameters, detached. Others are absent."""
        with torch.no_grad():
            return {n: sgd_update(params[n].detach(), torch.zeros_like(params[n]), h) for n, h in self.hyper.items()}

    def scale(self) -> dict[str, float]:
        return {n: h.grad_scale for n, h in self.hyper.items()}

    def restrict(self, names: Iterable[str]) -> VirtualStep:
        """The same step over the parameters in `names` only: the others are held at their current
        values, as parameters the optimizer does not update (the cheap engines' restriction)."""
        keep = set(names)
        return VirtualStep({n: h for n, h in self.hyper.items() if n in keep})

    def apply(self, params: dict[str, Tensor], grads: dict[str, Tensor | None]) -> dict[str, Tensor]:
        """Differentiable theta'(grad). A missing gradient counts as zero, as in `base`, so both
        engines treat a parameter the noisy batch does not reach the same way."""
        out = {}
        for n, h in self.hyper.items():
            g = grads.get(n)
            out[n] = sgd_update(params[n], torch.zeros_like(params[n]) if g is None else g, h)
        return out


def virtual_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> VirtualStep:
    """Read the optimizer's current state into a :class:`VirtualStep`.

    Raises
    ------
    TypeError
        For optimizers other than torch.optim.SGD (their exact Jacobian is not derived here).
    ValueError
        When the optimizer holds a tensor that is not a parameter of `model`.
    """
    if type(optimizer) is not torch.optim.SGD:
        raise TypeError(
            f"meta_weights supports {', '.join(SUPPORTED_OPTIMIZERS)} for the virtual step, got "
            f"{type(optimizer).__module__}.{type(optimizer).__qualname__}. The virtual step must be "
            "the real optimizer's own update; other optimizers are not derived and tested yet."
        )
    name_of = {id(p): n for n, p in model.named_parameters()}
    hyper: dict[str, SGDHyper] = {}
    for gi, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            if id(p) not in name_of:
                raise ValueError(
                    f"optimizer param group {gi} holds a tensor of shape {tuple(p.shape)} "
                    "that is not a parameter of the model passed to meta_weights"
                )
            if not p.requires_grad:
                continue
            state = optimizer.state.get(p, {})
            hyper[name_of[id(p)]] = SGDHyper(
                lr=float(group["lr"]),
                momentum=float(group["momentum"]),
                dampening=float(group["dampening"]),
                weight_decay=float(group["weight_decay"]),
                nesterov=bool(group["nesterov"]),
                maximize=bool(group.get("maximize", False)),
                momentum_buffer=state.get("momentum_buffer"),
            )
    return VirtualStep(hyper)
