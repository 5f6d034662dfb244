"""Forward-mode rules of our own for the layers that dominate the engines' dual forward.

The exact engines need zdot, the derivative of the logits along the meta tangents, from one dual
forward (:func:`l2b.meta.engine.dual_forward`). With torch's own rules two things cost more than
the derivative itself:

- torch's rule for train-mode ``batch_norm`` costs 6-9 times the layer's primal forward on the
  CPU;
- in the fused engine the dual forward is also the real step's forward, so autograd records every
  op of every tangent (they depend on parameters that require grad) and keeps them until the
  backward: about as much memory again as the real forward's own graph.

The engines only ever read zdot; nothing differentiates it. So these rules compute the tangents
outside autograd, and BatchNorm's in closed form. The primal outputs, BatchNorm's running
statistics and every backward are torch's own kernels (``native_batch_norm``, ``conv2d``,
``linear`` and their backward ops), so the real step through these layers is bit for bit the plain
one, and the tangents equal torch's to rounding (tests/test_dual_rules.py).

Train-mode BatchNorm, y = γ x̂ + β with x̂ = (x − μ) · r and r = (σ² + ε)^(-1/2) over every axis
but the channel's:

    ẏ = γ r (ẋ − mean(ẋ) − x̂ · mean(ẋ x̂)) + γ̇ x̂ + β̇,

computed as ẏ = a ẋ + b x + c with per-channel a, b, c, so x̂ is never materialised. A
convolution's tangent is conv(ẋ, W) + conv(x, Ẇ) + ḃ, a linear layer's likewise.

The rules are on by default. Within a :func:`torch_rules` block they are off: :func:`dual_rules`
then does nothing and the dual forward takes torch's own forward-mode rules, as it did before
these rules existed. That is for measuring what they save (benchmarks/step_cost.py's
``-torchrules`` variants) and checking them against torch's; training never needs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = ["BatchNormTangent", "Conv2dTangent", "LinearTangent", "dual_rules", "torch_rules"]

# Whether dual_rules() applies the rules: off only inside torch_rules(), in that thread or task.
_OWN_RULES: ContextVar[bool] = ContextVar("l2b_own_dual_rules", default=True)


def _add(out: Tensor | None, t: Tensor) -> Tensor:
    return t if out is None else out.add_(t)


def _pair(v: int | tuple[int, ...]) -> list[int]:
    return [v, v] if isinstance(v, int) else list(v)


class BatchNormTangent(torch.autograd.Function):
    """Train-mode batch norm with the closed-form tangent. Inputs as ``torch.native_batch_norm``'s:
    x (N, C, ...), weight / bias (C,) or None, running_mean / running_var (C,) or None (updated
    in place), momentum, eps. Outputs y (N, C, ...), the batch mean (C,) and inverse std (C,).
    The tangent is computed without autograd: it is not itself differentiable."""

    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, momentum, eps):  # noqa: D102
        return torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        x, weight, _, running_mean, running_var, _, eps = inputs
        _, mean, invstd = output
        ctx.eps, ctx.has_weight = eps, weight is not None
        ctx.save_for_forward(x, weight, mean, invstd)
        ctx.save_for_backward(x, weight, running_mean, running_var, mean, invstd)
        ctx.mark_non_differentiable(mean, invstd)

    @staticmethod
    @torch.no_grad()
    def jvp(ctx, x_dot, weight_dot, bias_dot, *_):  # noqa: D102
        x, weight, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean, invstd = mean.view(shape), invstd.view(shape)
        scale = invstd if weight is None else weight.view(shape) * invstd  # γ r
        b, c = torch.zeros_like(invstd), torch.zeros_like(invstd)
        if x_dot is not None:
            dims = [0, *range(2, x.dim())]
            m_dot = x_dot.mean(dims, keepdim=True)
            # mean(ẋ x̂) = r (mean(ẋ x) − μ mean(ẋ)), without forming ẋ x̂
            m_xx = torch.einsum("nc...,nc...->c", x_dot, x).view(shape) / (x.numel() // x.shape[1])
            b = b - scale * invstd * (invstd * (m_xx - mean * m_dot))
            c = c - scale * m_dot
        if weight_dot is not None:
            b = b + weight_dot.view(shape) * invstd
        c = c - b * mean
        if bias_dot is not None:
            c = c + bias_dot.view(shape)
        out = torch.mul(x, b) if x_dot is None else torch.mul(x_dot, scale).addcmul_(x, b)
        return out.add_(c).to(x.dtype), None, None

    @staticmethod
    def backward(ctx, grad_out, *_):  # noqa: D102
        x, weight, running_mean, running_var, mean, invstd = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grads = torch.ops.aten.native_batch_norm_backward(
            grad_out, x, weight, running_mean, running_var, mean, invstd, True, ctx.eps,
            [needs[0], needs[1] and ctx.has_weight, needs[2]],
        )  # fmt: skip
        return *grads, None, None, None, None


class Conv2dTangent(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups)`` (numeric padding) with
    its tangent conv(ẋ, W) + conv(x, Ẇ) + ḃ computed without autograd."""

    @staticmethod
    def forward(x, weight, bias, stride, padding, dilation, groups):  # noqa: D102
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        x, weight, bias, stride, padding, dilation, groups = inputs
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias, ctx.out_shape = bias is not None, output.shape
        ctx.save_for_forward(x, weight)
        ctx.save_for_backward(x, weight)

    @staticmethod
    @torch.no_grad()
    def jvp(ctx, x_dot, weight_dot, bias_dot, *_):  # noqa: D102
        x, weight = ctx.saved_tensors
        out = None
        if x_dot is not None:
            out = F.conv2d(x_dot, weight, None, *ctx.conf)
        if weight_dot is not None:
            out = _add(out, F.conv2d(x, weight_dot, None, *ctx.conf))
        if bias_dot is not None:
            b = bias_dot.view(1, -1, 1, 1)
            out = _add(out, b) if out is not None else b.expand(ctx.out_shape).clone()
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        needs = ctx.needs_input_grad
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out, x, weight, [weight.shape[0]] if ctx.has_bias else None,
            _pair(stride), _pair(padding), _pair(dilation), False, [0, 0], groups,
            [needs[0], needs[1], ctx.has_bias and needs[2]],
        )  # fmt: skip
        return grad_x, grad_w, grad_b, None, None, None, None


class LinearTangent(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` with its tangent ẋ Wᵀ + x Ẇᵀ + ḃ computed without autograd."""

    @staticmethod
    def forward(x, weight, bias):  # noqa: D102
        return F.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        x, weight, bias = inputs
        ctx.has_bias = bias is not None
        ctx.save_for_forward(x, weight)
        ctx.save_for_backward(x, weight)

    @staticmethod
    @torch.no_grad()
    def jvp(ctx, x_dot, weight_dot, bias_dot):  # noqa: D102
        x, weight = ctx.saved_tensors
        out = None
        if x_dot is not None:
            out = F.linear(x_dot, weight)
        if weight_dot is not None:
            out = _add(out, F.linear(x, weight_dot))
        if bias_dot is not None:
            out = _add(out, bias_dot) if out is not None else bias_dot.expand(*x.shape[:-1], -1).clone()
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_x = grad_out @ weight if needs[0] else None
        flat = grad_out.reshape(-1, grad_out.shape[-1])
        grad_w = flat.t() @ x.reshape(-1, x.shape[-1]) if needs[1] else None
        grad_b = flat.sum(0) if ctx.has_bias and needs[2] else None
        return grad_x, grad_w, grad_b


_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


class _DualRules(TorchFunctionMode):
    """Routes train-mode ``F.batch_norm``, ``F.conv2d`` with numeric padding and ``F.linear`` to
    the Functions above; every other call (and these with other arguments) to torch."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            a = {"training": False, "momentum": 0.1, "eps": 1e-5, **dict(zip(_BN_ARGS, args)), **kwargs}
            if a["training"]:
                return BatchNormTangent.apply(
                    a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["momentum"], a["eps"]
                )[0]
        elif func is F.conv2d:
            a = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, **dict(zip(_CONV_ARGS, args))}
            a.update(kwargs)
            if not isinstance(a["padding"], str):
                return Conv2dTangent.apply(*(a[k] for k in _CONV_ARGS))
        elif func is F.linear:
            a = {"bias": None, **dict(zip(("input", "weight", "bias"), args)), **kwargs}
            return LinearTangent.apply(a["input"], a["weight"], a["bias"])
        return func(*args, **kwargs)


@contextlib.contextmanager
def dual_rules() -> Iterator[None]:
    """Within the block, train-mode BatchNorm, 2-d convolutions and linear layers take the rules
    above (use it around a dual forward; outside one they only add a little dispatch). Inside a
    :func:`torch_rules` block it does nothing."""
    if not _OWN_RULES.get():
        yield
        return
    with _DualRules():
        yield


@contextlib.contextmanager
def torch_rules() -> Iterator[None]:
    """Within the block (in the current thread), :func:`dual_rules` does nothing: the engines'
    dual forward takes torch's own forward-mode rules. On leaving it the rules are as before."""
    token = _OWN_RULES.set(False)
    try:
        yield
    finally:
        _OWN_RULES.reset(token)
