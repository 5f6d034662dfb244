"""Exactness of the meta-gradient engines.

The independent reference for both engines is a finite difference through a *real*
torch.optim.SGD step taken on a copy of the model and optimizer.
"""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from l2b import meta_weights, normalize_scores
from l2b.meta import sgd_update, virtual_step

SGD_VARIANTS = {
    "momentum+wd": dict(lr=0.1, momentum=0.9, weight_decay=5e-4),
    "nesterov": dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
    "dampening": dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=5e-4),
    "plain": dict(lr=0.2),
    "maximize": dict(lr=0.1, momentum=0.5, weight_decay=1e-4, maximize=True),
}


def bn_cnn(num_classes: int = 5) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, stride=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, num_classes),
    )


def tiny_mlp(num_classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, num_classes))


def make_batches(gen, shape, num_classes, b=10, m=7):
    x = torch.randn(b, *shape, generator=gen, dtype=torch.float64)
    y = torch.randint(0, num_classes, (b,), generator=gen)
    mx = torch.randn(m, *shape, generator=gen, dtype=torch.float64)
    my = torch.randint(0, num_classes, (m,), generator=gen)
    return x, y, mx, my


def trained(model_fn, opt_kw, shape, num_classes, steps=3, seed=0):
    """A float64 model and optimizer after a few real steps (non-zero momentum buffers)."""
    torch.manual_seed(seed)
    model = model_fn(num_classes).double()
    opt = torch.optim.SGD(model.parameters(), **opt_kw)
    gen = torch.Generator().manual_seed(seed + 100)
    for _ in range(steps):
        x = torch.randn(12, *shape, generator=gen, dtype=torch.float64)
        y = torch.randint(0, num_classes, (12,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, gen


def finite_difference_scores(model, opt, x, y, mx, my, h=1e-5):
    """-dL_meta/d eps by central differences, each virtual step taken by the real torch SGD."""
    with torch.no_grad():
        model.train()
        pseudo = copy.deepcopy(model)(x).argmax(1)

    def meta_loss(eps):
        m2, o2 = copy.deepcopy((model, opt))
        m2.train()
        logits = m2(x)
        c = torch.stack(
            [F.cross_entropy(logits, y, reduction="none"), F.cross_entropy(logits, pseudo, reduction="none")]
        )
        o2.zero_grad()
        (eps * c).sum().backward()
        o2.step()
        with torch.no_grad():
            return float(F.cross_entropy(m2(mx), my))

    raw = torch.zeros(2, x.shape[0], dtype=torch.float64)
    for k in range(2):
        for i in range(x.shape[0]):
            e = torch.zeros(2, x.shape[0], dtype=torch.float64)
            e[k, i] = h
            raw[k, i] = -(meta_loss(e) - meta_loss(-e)) / (2 * h)
    return raw


@pytest.mark.parametrize("variant", sorted(SGD_VARIANTS))
def test_forward_equals_reverse_on_batchnorm_cnn(variant):
    model, opt, gen = trained(bn_cnn, SGD_VARIANTS[variant], (3, 6, 6), 5)
    x, y, mx, my = make_batches(gen, (3, 6, 6), 5, b=16, m=12)
    fwd = meta_weights(model, x, y, mx, my, opt, engine="forward")
    rev = meta_weights(model, x, y, mx, my, opt, engine="reverse")
    scale = rev.raw.abs().max()
    assert scale > 0
    assert (fwd.raw - rev.raw).abs().max() / scale <= 1e-6
    # The pseudo-label row is a different quantity from the observed-label row here.
    assert not torch.equal(fwd.pseudo_labels, y)
    assert torch.equal(fwd.pseudo_labels, rev.pseudo_labels)
    torch.testing.assert_close(fwd.alpha, rev.alpha, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(fwd.beta, rev.beta, rtol=1e-6, atol=1e-12)
    assert fwd.meta_loss == pytest.approx(rev.meta_loss, rel=1e-12)


def test_forward_equals_reverse_with_probability_targets_and_param_groups():
    torch.manual_seed(1)
    model = bn_cnn(4).double()
    opt = torch.optim.SGD(
        [{"params": list(model[:3].parameters()), "lr": 0.02}, {"params": list(model[3:].parameters())}],
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-3,
    )
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        x, y, _, _ = make_batches(gen, (3, 6, 6), 4)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    x, y, mx, my = make_batches(gen, (3, 6, 6), 4, b=12, m=8)
    targets = torch.softmax(torch.randn(12, 4, generator=gen, dtype=torch.float64), 1)  # as after mixup
    fwd = meta_weights(model, x, targets, mx, my, opt, engine="forward")
    rev = meta_weights(model, x, targets, mx, my, opt, engine="reverse")
    assert (fwd.raw - rev.raw).abs().max() / rev.raw.abs().max() <= 1e-6


@pytest.mark.parametrize("variant", ["momentum+wd", "nesterov", "maximize"])
def test_both_engines_match_finite_differences_of_real_sgd(variant):
    model, opt, gen = trained(tiny_mlp, SGD_VARIANTS[variant], (4,), 3)
    x, y, mx, my = make_batches(gen, (4,), 3, b=6, m=5)
    fd = finite_difference_scores(model, opt, x, y, mx, my)
    assert fd.abs().max() > 1e-4  # the check is not vacuous
    for engine in ("forward", "reverse"):
        raw = meta_weights(model, x, y, mx, my, opt, engine=engine).raw
        torch.testing.assert_close(raw, fd, rtol=1e-5, atol=1e-8)


def test_first_step_without_momentum_buffers_matches_finite_differences():
    torch.manual_seed(2)
    model = tiny_mlp(3).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(5)
    x, y, mx, my = make_batches(gen, (4,), 3, b=6, m=5)
    assert not opt.state  # buffers are created by the first step: no dampening then
    fd = finite_difference_scores(model, opt, x, y, mx, my)
    for engine in ("forward", "reverse"):
        torch.testing.assert_close(meta_weights(model, x, y, mx, my, opt, engine=engine).raw, fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("engine", ["forward", "reverse"])
def test_meta_weights_leaves_model_and_optimizer_untouched(engine):
    model, opt, gen = trained(bn_cnn, SGD_VARIANTS["momentum+wd"], (3, 6, 6), 5)
    model.eval()
    x, y, mx, my = make_batches(gen, (3, 6, 6), 5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    bufs = {id(p): opt.state[p]["momentum_buffer"].clone() for p in model.parameters()}
    grads = {id(p): p.grad.clone() for p in model.parameters()}
    meta_weights(model, x, y, mx, my, opt, engine=engine)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # parameters, running stats and num_batches_tracked
    for p in model.parameters():
        assert torch.equal(opt.state[p]["momentum_buffer"], bufs[id(p)])
        assert torch.equal(p.grad, grads[id(p)])
    assert not model.training  # the caller's mode is restored


@pytest.mark.parametrize("engine", ["forward", "reverse"])
def test_l2rw_is_l2b_without_the_pseudo_row(engine):
    model, opt, gen = trained(bn_cnn, SGD_VARIANTS["momentum+wd"], (3, 6, 6), 5)
    x, y, mx, my = make_batches(gen, (3, 6, 6), 5, b=16)
    l2b_w = meta_weights(model, x, y, mx, my, opt, method="l2b", engine=engine)
    l2rw_w = meta_weights(model, x, y, mx, my, opt, method="l2rw", engine=engine)
    torch.testing.assert_close(l2rw_w.raw[0], l2b_w.raw[0], rtol=1e-12, atol=0)
    assert torch.count_nonzero(l2rw_w.raw[1]) == 0 and torch.count_nonzero(l2rw_w.beta) == 0
    torch.testing.assert_close(l2rw_w.alpha, normalize_scores(l2b_w.raw[:1])[0])
    assert float(l2rw_w.alpha.sum()) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("normalize", ["org", "softmax", "sigmoid"])
def test_weights_are_nonnegative_and_sum_to_one(normalize):
    model, opt, gen = trained(bn_cnn, SGD_VARIANTS["momentum+wd"], (3, 6, 6), 5)
    x, y, mx, my = make_batches(gen, (3, 6, 6), 5, b=16)
    w = meta_weights(model, x, y, mx, my, opt, normalize=normalize, temperature=0.01)
    assert w.alpha.shape == w.beta.shape == (16,) and w.raw.shape == (2, 16)
    assert (w.alpha >= 0).all() and (w.beta >= 0).all()
    assert float(w.alpha.sum() + w.beta.sum()) == pytest.approx(1.0, abs=1e-8)
    if normalize == "org":  # org zeroes every non-positive score
        assert torch.equal(w.alpha == 0, w.raw[0] <= 0) and torch.equal(w.beta == 0, w.raw[1] <= 0)
        assert (w.raw > 0).any() and (w.raw < 0).any()


def test_org_normalisation_all_zero_case_and_softmax_temperature():
    raw = -torch.rand(2, 5, dtype=torch.float64)
    assert torch.count_nonzero(normalize_scores(raw)) == 0
    soft = normalize_scores(raw, normalize="softmax", temperature=1e-3)
    assert int(soft.reshape(-1).argmax()) == int(raw.reshape(-1).argmax()) and float(soft.max()) > 0.9
    with pytest.raises(ValueError, match="temperature"):
        normalize_scores(raw, normalize="softmax", temperature=0.0)
    with pytest.raises(ValueError, match="normalize must be one of"):
        normalize_scores(raw, normalize="max")


def test_dropout_models_are_supported():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x, y, mx, my = (t.float() if t.is_floating_point() else t for t in make_batches(gen, (4,), 3))
    w = meta_weights(model, x, y, mx, my, opt)
    assert torch.isfinite(w.raw).all() and float(w.alpha.sum() + w.beta.sum()) == pytest.approx(1.0, abs=1e-5)


def test_unsupported_optimizer_and_foreign_parameters_are_refused():
    model = tiny_mlp()
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 2, 0])
    with pytest.raises(TypeError, match="torch.optim.SGD"):
        meta_weights(model, x, y, x, y, torch.optim.Adam(model.parameters()))
    other = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not a parameter of the model"):
        meta_weights(model, x, y, x, y, torch.optim.SGD(list(model.parameters()) + list(other.parameters()), lr=0.1))
    with pytest.raises(ValueError, match="labels has 3 rows but inputs has 4"):
        meta_weights(model, x, y[:3], x, y, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="engine must be one of"):
        meta_weights(model, x, y, x, y, torch.optim.SGD(model.parameters(), lr=0.1), engine="double")


def test_virtual_step_matches_torch_sgd_update():
    """sgd_update and the analytic Jacobian scale reproduce torch.optim.SGD exactly."""
    for name, kw in SGD_VARIANTS.items():
        model, opt, _ = trained(tiny_mlp, kw, (4,), 3, steps=2)
        step = virtual_step(model, opt)
        grads = {n: torch.randn_like(p) for n, p in model.named_parameters()}
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        expected = {n: sgd_update(params[n], grads[n], h) for n, h in step.hyper.items()}
        base, scale = step.base(params), step.scale()
        for n in expected:
            torch.testing.assert_close(base[n] - scale[n] * grads[n], expected[n], rtol=1e-12, atol=1e-14)
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
        opt.step()
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.detach(), expected[n], rtol=1e-12, atol=1e-14, msg=name)
