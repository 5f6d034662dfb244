"""The engines' own forward-mode rules (l2b.meta.dual_rules): the same derivatives as torch's rules
and as finite differences, the same primal outputs, BatchNorm running statistics and backward as
the plain layers, tangents outside autograd, and whole-model dual forwards that agree."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn

import l2b.meta.engine as engine
from l2b.meta import dual_forward
from l2b.meta.dual_rules import BatchNormTangent, Conv2dTangent, LinearTangent, dual_rules
from l2b.models import PreActResNet, create_model

G = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64)


def bn(x, w, b):
    return BatchNormTangent.apply(x, w, b, None, None, 0.1, 1e-5)[0]


def conv(x, w, b):
    return Conv2dTangent.apply(x, w, b, 2, 1, 1, 1)


def conv_groups(x, w, b):
    return Conv2dTangent.apply(x, w, b, 1, (1, 0), 1, 2)


CASES = {
    "batchnorm1d": (bn, lambda: (rand(7, 3) * 2 + 0.5, rand(3).abs() + 0.5, rand(3))),
    "batchnorm-seq": (bn, lambda: (rand(5, 3, 4), rand(3).abs() + 0.5, rand(3))),
    "batchnorm2d": (bn, lambda: (rand(4, 3, 5, 6), rand(3).abs() + 0.5, rand(3))),
    "batchnorm2d-no-affine": (bn, lambda: (rand(4, 3, 5, 6), None, None)),
    "conv2d": (conv, lambda: (rand(2, 4, 6, 6), rand(6, 4, 3, 3), rand(6))),
    "conv2d-groups": (conv_groups, lambda: (rand(2, 4, 5, 5), rand(6, 2, 3, 3), None)),
    "linear": (LinearTangent.apply, lambda: (rand(5, 4), rand(3, 4), rand(3))),
    "linear-3d": (LinearTangent.apply, lambda: (rand(2, 5, 4), rand(3, 4), None)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck_forward_and_backward(case):
    """Finite differences confirm each rule's tangent and backward."""
    fn, make = CASES[case]
    args = tuple(a if a is None else a.requires_grad_() for a in make())
    assert torch.autograd.gradcheck(fn, args, check_forward_ad=True, check_backward_ad=True)


TORCH = {
    "batchnorm2d": lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
    "conv2d": lambda x, w, b: F.conv2d(x, w, b, 2, 1),
    "linear": F.linear,
}


@pytest.mark.parametrize("case", list(TORCH))
@pytest.mark.parametrize("which", [(0,), (1,), (2,), (0, 1, 2)])
def test_tangent_and_output_equal_torchs_for_any_subset_of_tangents(case, which):
    fn, make = CASES[case]
    args = make()
    dots = [torch.randn_like(a) for a in args]

    def run(f):
        with fwAD.dual_level():
            duals = [fwAD.make_dual(a, d) if i in which else a for i, (a, d) in enumerate(zip(args, dots))]
            return fwAD.unpack_dual(f(*duals))

    (y0, t0), (y1, t1) = run(TORCH[case]), run(fn)
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    torch.testing.assert_close(t1, t0, rtol=1e-12, atol=1e-12)


def test_tangents_are_computed_outside_autograd():
    """What the fused engine saves: the primal output keeps its graph, the tangent has none."""
    x, w, b = CASES["conv2d"][1]()
    w.requires_grad_()
    with fwAD.dual_level():
        y = Conv2dTangent.apply(fwAD.make_dual(x, torch.randn_like(x)), w, b, 2, 1, 1, 1)
        z = BatchNormTangent.apply(y, None, None, None, None, 0.1, 1e-5)[0]
        primal, tangent = fwAD.unpack_dual(LinearTangent.apply(z.flatten(1), rand(2, 54), None))
    assert primal.requires_grad and not tangent.requires_grad


def test_batchnorm_running_statistics_and_backward_are_torchs_own():
    torch.manual_seed(0)
    bn0, bn1 = nn.BatchNorm2d(5), nn.BatchNorm2d(5)
    bn1.load_state_dict(bn0.state_dict())
    x = torch.randn(8, 5, 4, 4, requires_grad=True)
    y0 = bn0(x)
    (g0,) = torch.autograd.grad(y0.square().sum(), x)
    with dual_rules():
        y1 = bn1(x)
    (g1,) = torch.autograd.grad(y1.square().sum(), x)
    assert torch.equal(y0, y1) and torch.equal(g0, g1)
    for name, buf in bn0.named_buffers():
        assert torch.equal(buf, dict(bn1.named_buffers())[name]), name
    with dual_rules():  # eval mode is left to torch
        assert torch.equal(bn1.eval()(x), bn0.eval()(x))


def test_string_padding_is_left_to_torch(monkeypatch):
    def refuse(*args):
        raise AssertionError("routed to Conv2dTangent")

    monkeypatch.setattr(Conv2dTangent, "apply", refuse)
    conv = nn.Conv2d(2, 3, 3, padding="same")
    with dual_rules():
        assert conv(torch.randn(1, 2, 5, 5)).shape == (1, 3, 5, 5)
        with pytest.raises(AssertionError, match="Conv2dTangent"):
            nn.Conv2d(2, 3, 3, padding=1)(torch.randn(1, 2, 5, 5))


def _models():
    torch.manual_seed(0)
    return {
        "preact_resnet": PreActResNet([1, 1, 1, 1], 3, 4, base_width=4),
        "small_cnn": create_model("small_cnn", num_classes=4, in_shape=(3, 8, 8)),
        "mlp": create_model("mlp", num_classes=4, in_shape=(3, 8, 8)),
    }


@pytest.mark.parametrize("name", ["preact_resnet", "small_cnn", "mlp"])
@pytest.mark.parametrize("real_step", [False, True])
def test_a_network_gets_the_same_dual_forward_as_with_torchs_rules(name, real_step, monkeypatch):
    """The engines' dual forward takes these rules (each layer kind of the network goes through
    its Function), matches torch's own rules, and with ``real_step`` the gradients and BatchNorm
    statistics are bit for bit those of the plain forward."""
    model = _models()[name].double().train()
    calls: dict[str, int] = {}
    for fn in (BatchNormTangent, Conv2dTangent, LinearTangent):
        original = fn.apply

        def counted(*args, _name=fn.__name__, _original=original):
            calls[_name] = calls.get(_name, 0) + 1
            return _original(*args)

        monkeypatch.setattr(fn, "apply", counted)
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    tangents = {n: torch.randn_like(p) * 0.1 for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def run(ours):
        model.load_state_dict(state)
        model.zero_grad()
        calls.clear()
        with monkeypatch.context() as m:
            if not ours:
                m.setattr(engine, "dual_rules", torch.enable_grad)
            z, zdot = dual_forward(model, x, tangents, real_step=real_step)
        has = {
            "BatchNormTangent": (nn.BatchNorm1d, nn.BatchNorm2d),
            "Conv2dTangent": nn.Conv2d,
            "LinearTangent": nn.Linear,
        }
        expected = {f: ours and any(isinstance(mod, kinds) for mod in model.modules()) for f, kinds in has.items()}
        assert {f: calls.get(f, 0) > 0 for f in has} == expected
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


def test_torch_rules_turns_the_own_rules_off_within_its_block_and_on_again(monkeypatch):
    """The public switch: inside ``torch_rules()`` the dual forward takes torch's rules (no call of
    the Functions, the same zdot to rounding); outside it, and by default, it takes the own rules."""
    from l2b.meta.dual_rules import torch_rules

    calls = []
    original = LinearTangent.apply
    monkeypatch.setattr(LinearTangent, "apply", lambda *args: calls.append(1) or original(*args))
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    tangents = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    _, ours = dual_forward(model, x, tangents)
    assert len(calls) == 1
    with torch_rules():
        _, torchs = dual_forward(model, x, tangents)
        assert len(calls) == 1
    _, again = dual_forward(model, x, tangents)
    assert len(calls) == 2
    torch.testing.assert_close(torchs, ours, rtol=1e-12, atol=1e-12)
    assert torch.equal(again, ours)
