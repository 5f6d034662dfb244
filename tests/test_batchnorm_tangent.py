"""The closed-form BatchNorm tangent of the engines' dual forward (l2b.meta.batchnorm): the same
derivative as torch's own rule and as finite differences, the same primal output, running
statistics and backward as plain BatchNorm, and whole-model dual forwards that agree."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn

from l2b.meta import dual_forward
from l2b.meta.batchnorm import BatchNormTangent, batchnorm_tangents, has_batchnorm
from l2b.models import PreActResNet


def _inputs(shape, affine=True):
    g = torch.Generator().manual_seed(0)
    c = shape[1]
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5
    w = torch.rand(c, generator=g, dtype=torch.float64) + 0.5 if affine else None
    b = torch.randn(c, generator=g, dtype=torch.float64) if affine else None
    return x, w, b


@pytest.mark.parametrize("shape", [(7, 3), (5, 3, 4), (4, 3, 5, 6)])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_forward_and_backward(shape, affine):
    """Finite differences confirm the forward-mode rule and the backward, for BatchNorm1d/2d inputs."""
    x, w, b = _inputs(shape, affine)
    args = [x.requires_grad_()] + ([w.requires_grad_(), b.requires_grad_()] if affine else [None, None])

    def fn(x, w, b):
        return BatchNormTangent.apply(x, w, b, None, None, 0.1, 1e-5)[0]

    assert torch.autograd.gradcheck(fn, tuple(args), check_forward_ad=True, check_backward_ad=True)


@pytest.mark.parametrize("which", ["x", "weight", "bias", "all"])
def test_tangent_equals_torchs_rule_for_any_subset_of_tangents(which):
    x, w, b = _inputs((6, 4, 3, 3))
    g = torch.Generator().manual_seed(1)
    dots = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in (("x", x), ("weight", w), ("bias", b))}
    use = dots if which == "all" else {which: dots[which]}

    def run(custom):
        with fwAD.dual_level():
            duals = {k: fwAD.make_dual(v, use[k]) if k in use else v for k, v in (("x", x), ("weight", w), ("bias", b))}
            if custom:
                out = BatchNormTangent.apply(duals["x"], duals["weight"], duals["bias"], None, None, 0.1, 1e-5)[0]
            else:
                out = F.batch_norm(duals["x"], None, None, duals["weight"], duals["bias"], training=True)
            return fwAD.unpack_dual(out)

    (y0, t0), (y1, t1) = run(False), run(True)
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    torch.testing.assert_close(t1, t0, rtol=1e-12, atol=1e-12)


def test_primal_running_statistics_and_backward_are_torchs_own():
    torch.manual_seed(0)
    bn0, bn1 = nn.BatchNorm2d(5), nn.BatchNorm2d(5)
    bn1.load_state_dict(bn0.state_dict())
    x = torch.randn(8, 5, 4, 4, requires_grad=True)
    y0 = bn0(x)
    (g0,) = torch.autograd.grad(y0.square().sum(), x)
    with batchnorm_tangents(bn1):
        y1 = bn1(x)
    (g1,) = torch.autograd.grad(y1.square().sum(), x)
    assert torch.equal(y0, y1) and torch.equal(g0, g1)
    for name, buf in bn0.named_buffers():
        assert torch.equal(buf, dict(bn1.named_buffers())[name]), name
    bn1.eval()  # eval mode is left to torch: running statistics, no coupling between samples
    with batchnorm_tangents(bn1):
        assert torch.equal(bn1(x), bn0.eval()(x))


@pytest.mark.parametrize("real_step", [False, True])
def test_a_batchnorm_network_gets_the_same_dual_forward(real_step, monkeypatch):
    """The engines' dual forward of a ResNet with the closed form matches torch's own rule, and
    with ``real_step`` its gradients are bit for bit those of the plain forward."""
    import l2b.meta.engine as engine

    torch.manual_seed(0)
    model = PreActResNet([1, 1, 1, 1], 3, 4, base_width=4).double().train()
    assert has_batchnorm(model)
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    tangents = {n: torch.randn_like(p) * 0.1 for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def run(custom):
        model.load_state_dict(state)
        model.zero_grad()
        if not custom:
            monkeypatch.setattr(engine, "batchnorm_tangents", lambda m: torch.enable_grad())
        z, zdot = dual_forward(model, x, tangents, real_step=real_step)
        monkeypatch.undo()
        grads = None
        if real_step:
            z.square().sum().backward()
            grads = [p.grad.clone() for p in model.parameters()]
        return z.detach(), zdot, grads, {k: v.clone() for k, v in model.state_dict().items()}

    (z0, d0, g0, s0), (z1, d1, g1, s1) = run(False), run(True)
    assert torch.equal(z0, z1)
    torch.testing.assert_close(d1, d0, rtol=1e-10, atol=1e-12)
    if real_step:
        assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    assert all(torch.equal(s0[k], s1[k]) for k in s0)


def test_a_model_without_batchnorm_layers_is_left_alone(monkeypatch):
    """Only models with torch BatchNorm layers take the closed form; another module's own call of
    F.batch_norm keeps torch's rule."""

    class OwnNorm(nn.Module):
        def forward(self, x):
            return F.batch_norm(x, None, None, training=True)

    def refuse(*args):
        raise AssertionError("the closed form was used")

    model = nn.Sequential(nn.Linear(3, 4), OwnNorm(), nn.Linear(4, 2))
    monkeypatch.setattr(BatchNormTangent, "apply", refuse)
    assert not has_batchnorm(model)
    with batchnorm_tangents(model):
        model(torch.randn(5, 3))
    with pytest.raises(AssertionError, match="closed form"), batchnorm_tangents(nn.BatchNorm1d(3)):
        nn.BatchNorm1d(3)(torch.randn(5, 3))
