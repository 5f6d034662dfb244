"""Training steps: registry, every method's step, mixup, clipping."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from l2b.methods import Batch, StepContext, StepOutput, create_method, list_methods, mixup

K = 4


def setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, K))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, K, (16,), generator=g)
    mx, my = torch.randn(8, 6, generator=g), torch.randint(0, K, (8,), generator=g)
    return model, opt, x, y, mx, my


def test_registry_lists_the_paper_methods_and_rejects_unknown_names():
    assert list_methods() == [
        "bootstrap-hard",
        "bootstrap-soft",
        "ce",
        "dividemix",
        "dividemix-l2b",
        "l2b",
        "l2rw",
        "unicon",
        "unicon-l2b",
    ]
    with pytest.raises(ValueError, match="unknown method 'mwnet'.*l2b"):
        create_method("mwnet")


@pytest.mark.parametrize("name", ["ce", "bootstrap-soft", "bootstrap-hard", "l2rw", "l2b"])
@pytest.mark.parametrize("use_mixup", [False, True])
def test_every_method_takes_a_step(name, use_mixup):
    model, opt, x, y, mx, my = setup()
    before = [p.detach().clone() for p in model.parameters()]
    method = create_method(name, mixup=use_mixup)
    out = method.step(
        model,
        opt,
        Batch(x, y, meta_inputs=mx, meta_labels=my),
        StepContext(num_classes=K, generator=torch.Generator().manual_seed(1)),
    )
    assert isinstance(out, StepOutput) and out.loss == out.loss and out.loss >= 0
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    if name in ("l2rw", "l2b"):
        assert out.alpha.shape == (16,) and (out.alpha >= 0).all()
        total = float(out.alpha.sum() + out.beta.sum())
        assert total == pytest.approx(1.0, abs=1e-5) or out.stats["all_zero"] == 1.0
        assert "meta_loss" in out.stats
        if name == "l2rw":
            assert torch.count_nonzero(out.beta) == 0
    else:
        assert out.alpha is None


def test_l2b_real_step_minimises_the_weighted_costs():
    """The back-propagated loss is sum(alpha * CE(y)) + sum(beta * CE(pseudo)) at the step's start."""
    model, opt, x, y, mx, my = setup(3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = create_method("l2b").step(model, opt, Batch(x, y, meta_inputs=mx, meta_labels=my), StepContext(num_classes=K))
    model.load_state_dict(state)  # back to the step's starting point
    with torch.no_grad():
        logits = model.train()(x)
    expected = (out.alpha * F.cross_entropy(logits, y, reduction="none")).sum() + (
        out.beta * F.cross_entropy(logits, out.pseudo_labels, reduction="none")
    ).sum()
    assert out.loss == pytest.approx(float(expected), rel=1e-5)


def test_meta_methods_need_a_meta_batch():
    model, opt, x, y, _, _ = setup()
    with pytest.raises(ValueError, match="needs a clean meta batch"):
        create_method("l2b").step(model, opt, Batch(x, y), StepContext(num_classes=K))


def test_mixup_targets_are_distributions_and_reproducible():
    x, y = torch.randn(32, 3), torch.randint(0, K, (32,))
    xa, ta = mixup(x, y, K, alpha=32.0, generator=torch.Generator().manual_seed(7))
    xb, tb = mixup(x, y, K, alpha=32.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(xa, xb) and torch.equal(ta, tb)
    assert ta.shape == (32, K)
    torch.testing.assert_close(ta.sum(1), torch.ones(32))
    lam = float(ta[torch.arange(32), y].min())  # Beta(32, 32) keeps lambda near 1/2
    assert 0.25 < lam < 1.0
    state = torch.random.get_rng_state()
    mixup(x, y, K, alpha=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is not touched


def test_bootstrap_with_beta_one_is_cross_entropy_and_beta_is_checked():
    model, opt, x, y, _, _ = setup()
    a = create_method("bootstrap-soft", beta=1.0)
    loss, _ = a.loss(model, opt, x, y, Batch(x, y), StepContext(num_classes=K))
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y))
    with pytest.raises(ValueError, match="bootstrap beta must be in"):
        create_method("bootstrap-hard", beta=1.5)
    assert create_method("bootstrap-soft").beta == 0.95 and create_method("bootstrap-hard").beta == 0.8


def test_gradient_clipping_reports_the_norm_and_bounds_the_update():
    model, _, x, y, mx, my = setup()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    out = create_method("ce", clip_grad=1e-3).step(model, opt, Batch(x, y), StepContext(num_classes=K))
    assert out.stats["grad_norm"] > 1e-3
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert float(moved) <= 1e-3 * (1 + 1e-4)
    with pytest.raises(ValueError, match="clip_grad must be positive"):
        create_method("ce", clip_grad=0.0)


@pytest.mark.parametrize("name", ["l2b", "l2rw"])
@pytest.mark.parametrize("use_mixup", [False, True])
def test_fused_forward_and_reverse_steps_give_the_same_update(name, use_mixup):
    """All step engines: same weights, same new parameters, same BatchNorm statistics (float64)."""
    import copy

    torch.manual_seed(0)
    base = nn.Sequential(
        nn.Conv2d(2, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 16, K)
    ).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 2, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, K, (12,), generator=g)
    mx, my = torch.randn(9, 2, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, K, (9,), generator=g)
    results = {}
    for engine in ("fused", "forward", "reverse"):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        method = create_method(name, engine=engine, mixup=use_mixup)
        outs = [
            method.step(
                model,
                opt,
                Batch(x, y, meta_inputs=mx, meta_labels=my),
                StepContext(num_classes=K, generator=torch.Generator().manual_seed(s)),
            )
            for s in range(3)
        ]  # later steps have momentum buffers
        results[engine] = (outs, model.state_dict())
    ref_outs, ref_state = results["reverse"]
    for engine in ("fused", "forward"):
        outs, state = results[engine]
        for o, r in zip(outs, ref_outs):
            torch.testing.assert_close(o.alpha, r.alpha, rtol=1e-6, atol=1e-12)
            torch.testing.assert_close(o.beta, r.beta, rtol=1e-6, atol=1e-12)
            assert o.loss == pytest.approx(r.loss, rel=1e-9)
        for k, v in state.items():
            torch.testing.assert_close(v, ref_state[k], rtol=1e-9, atol=1e-12, msg=f"{engine}: {k}")
