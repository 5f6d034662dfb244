"""A cheaper forward-mode rule for train-mode BatchNorm, exact, for the engines' dual forward.

torch's own forward-mode rule for ``batch_norm`` costs 6-9 times the primal forward on the CPU,
and inside the fused engine's dual forward (which is also the real step's forward) every
elementwise op of that rule is recorded in the autograd graph, where it is kept until the backward.
That was most of what separated the exact engines from their convolution-count floor
(docs/performance.md). Here the same derivative is computed in closed form from the statistics
the primal forward already has, in about three passes over the activation, and outside autograd:
the tangent is a number the engines read, never something they differentiate.

For train-mode BatchNorm y = γ x̂ + β with x̂ = (x − μ) · r, r = (σ² + ε)^(-1/2), the statistics
over every axis but the channel's (N and the spatial ones):

    ẏ = γ r (ẋ − mean(ẋ) − x̂ · mean(ẋ x̂)) + γ̇ x̂ + β̇

written as ẏ = a ẋ + b x + c with per-channel a, b, c, so that x̂ is never materialised.
The primal output, the running statistics' update and the backward are torch's own
(``native_batch_norm`` and its backward), so a real step through this layer is bit for bit the
plain one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["BatchNormTangent", "batchnorm_tangents", "has_batchnorm"]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


class BatchNormTangent(torch.autograd.Function):
    """Train-mode batch norm (outputs: y, saved mean (C,), saved inverse std (C,)) with the
    closed-form forward-mode derivative above. Inputs as ``torch.native_batch_norm``'s:
    x (N, C, ...), weight / bias (C,) or None, running_mean / running_var (C,) or None (updated
    in place), momentum, eps."""

    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, momentum, eps):  # noqa: D102
        return torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        x, weight, _, running_mean, running_var, _, eps = inputs
        _, mean, invstd = output
        ctx.eps = eps
        ctx.has_weight = weight is not None
        ctx.save_for_forward(x, weight, mean, invstd)
        ctx.save_for_backward(x, weight, running_mean, running_var, mean, invstd)
        ctx.mark_non_differentiable(mean, invstd)

    @staticmethod
    def jvp(ctx, x_dot, weight_dot, bias_dot, *_):  # noqa: D102
        x, weight, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean, invstd = mean.view(shape), invstd.view(shape)
        scale = invstd if weight is None else weight.view(shape) * invstd  # γ r
        a = None
        b = torch.zeros_like(invstd)
        c = torch.zeros_like(invstd)
        if x_dot is not None:
            dims = [0, *range(2, x.dim())]
            count = x.numel() // x.shape[1]
            m_dot = x_dot.mean(dims, keepdim=True)
            # mean(ẋ x̂) = r (mean(ẋ x) − μ mean(ẋ)), without forming ẋ x̂
            m_xx = torch.einsum("nc...,nc...->c", x_dot, x).view(shape) / count
            m_dx = invstd * (m_xx - mean * m_dot)
            a = scale
            b = b - scale * m_dx * invstd
            c = c - scale * m_dot
        if weight_dot is not None:
            b = b + weight_dot.view(shape) * invstd
        c = c - b * mean
        if bias_dot is not None:
            c = c + bias_dot.view(shape)
        out = torch.mul(x, b) if a is None else torch.mul(x_dot, a).addcmul_(x, b)
        return out.add_(c).to(x.dtype), None, None

    @staticmethod
    def backward(ctx, grad_out, *_):  # noqa: D102
        x, weight, running_mean, running_var, mean, invstd = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_out,
            x,
            weight,
            running_mean,
            running_var,
            mean,
            invstd,
            True,
            ctx.eps,
            [needs[0], needs[1] and ctx.has_weight, needs[2]],
        )
        return grad_x, grad_w, grad_b, None, None, None, None


class _TrainBatchNorm(TorchFunctionMode):
    """Routes every train-mode ``F.batch_norm`` call to :class:`BatchNormTangent`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            a = {"training": False, "momentum": 0.1, "eps": 1e-5, **dict(zip(_ARGS, args)), **kwargs}
            if a["training"]:
                out, _, _ = BatchNormTangent.apply(
                    a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["momentum"], a["eps"]
                )
                return out
        return func(*args, **kwargs)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether `model` holds a torch BatchNorm layer (1d, 2d or 3d)."""
    return any(isinstance(m, _BATCHNORMS) for m in model.modules())


@contextlib.contextmanager
def batchnorm_tangents(model: nn.Module) -> Iterator[None]:
    """Within the block, train-mode BatchNorm takes :class:`BatchNormTangent`'s forward-mode
    rule (for a model with BatchNorm layers; otherwise nothing changes)."""
    if not has_batchnorm(model):
        yield
        return
    with _TrainBatchNorm():
        yield
