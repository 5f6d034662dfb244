"""Per-pixel L2B / L2RW weights: exact against the double-backward reference in float64 and
against finite differences through a real SGD step, for binary (two-class) and K-class masks, on
small U-Net / UNet++ networks with BatchNorm in train mode.

Semantics (the segmentation variant of the paper): every pixel has two costs, cross-entropy
against its given label and against the network's own prediction, and a perturbation each, so the
perturbations have the shape (2, B, H, W); the weights are the clamped negative meta-gradient,
normalised jointly over both maps and every pixel of the batch.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from l2b import meta_weights
from l2b.models import create_model

H = W = 8


def _setup(name: str, k: int, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name, num_classes=k, in_shape=(1, H, W), width=2, depth=2).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(2):  # momentum buffers and moved BatchNorm statistics, as inside training
        x = torch.randn(4, 1, H, W, generator=g, dtype=torch.float64)
        y = torch.randint(0, k, (4, H, W), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    x = torch.randn(3, 1, H, W, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (3, H, W), generator=g)
    mx = torch.randn(2, 1, H, W, generator=g, dtype=torch.float64)
    my = torch.randint(0, k, (2, H, W), generator=g)
    return model, opt, x, y, mx, my


def _meta_loss_after_step(model, opt, x, y, pseudo, mx, my, eps):
    """The meta loss after a real SGD step on sum(eps * costs), costs (2, B, H, W)."""
    m2, o2 = copy.deepcopy((model, opt))
    m2.train()
    logits = m2(x)
    costs = torch.stack(
        [F.cross_entropy(logits, y, reduction="none"), F.cross_entropy(logits, pseudo, reduction="none")]
    )
    o2.zero_grad()
    (eps * costs).sum().backward()
    o2.step()
    with torch.no_grad():
        return float(F.cross_entropy(m2(mx), my))


@pytest.mark.parametrize("k", [2, 3], ids=["binary", "3-class"])
@pytest.mark.parametrize("name", ["unet", "unetpp"])
def test_per_pixel_weights_equal_the_double_backward_reference(name, k):
    model, opt, x, y, mx, my = _setup(name, k)
    before = copy.deepcopy(model.state_dict())
    ref = meta_weights(model, x, y, mx, my, opt, engine="reverse")
    assert ref.raw.shape == (2, 3, H, W) and ref.alpha.shape == (3, H, W) and ref.pseudo_labels.shape == (3, H, W)
    assert float(ref.raw.abs().max()) > 0
    every_block = {"tail_modules": len(model.meta_blocks())}  # the tail route over all of it: exact
    for engine, extra in (("forward", {}), ("fused", {}), ("tail", every_block)):
        w = meta_weights(model, x, y, mx, my, opt, engine=engine, **extra)
        assert float((w.raw - ref.raw).abs().max()) <= 1e-10, engine
        assert torch.equal(w.pseudo_labels, ref.pseudo_labels)
        torch.testing.assert_close(w.alpha, ref.alpha, rtol=0, atol=1e-12)
    # normalised jointly over both maps and every pixel; the model and its statistics untouched
    assert float(ref.alpha.sum() + ref.beta.sum()) == pytest.approx(1.0)
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())
    l2rw = meta_weights(model, x, y, mx, my, opt, method="l2rw", engine="forward")
    torch.testing.assert_close(l2rw.raw[0], ref.raw[0], rtol=0, atol=1e-10)
    assert float(l2rw.beta.abs().sum()) == 0.0


@pytest.mark.parametrize("k", [2, 3], ids=["binary", "3-class"])
def test_per_pixel_scores_match_finite_differences_of_a_real_sgd_step(k):
    model, opt, x, y, mx, my = _setup("unet", k, seed=3)
    w = meta_weights(model, x, y, mx, my, opt, engine="forward")
    with torch.no_grad():
        pseudo = copy.deepcopy(model).train()(x).argmax(1)
    h = 1e-5
    g = torch.Generator().manual_seed(7)
    for _ in range(6):  # random (cost row, image, pixel) positions
        row, b, i, j = (int(torch.randint(0, n, (1,), generator=g)) for n in (2, 3, H, W))
        e = torch.zeros(2, 3, H, W, dtype=torch.float64)
        e[row, b, i, j] = h
        fd = -(
            _meta_loss_after_step(model, opt, x, y, pseudo, mx, my, e)
            - _meta_loss_after_step(model, opt, x, y, pseudo, mx, my, -e)
        ) / (2 * h)
        assert float(w.raw[row, b, i, j]) == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_per_pixel_labels_are_checked_against_the_logits():
    model, opt, x, y, mx, my = _setup("unet", 3)
    with pytest.raises(ValueError, match=r"labels\[0, 2, 5\]=3 is outside \[0, 3\)"):
        bad = y.clone()
        bad[0, 2, 5] = 3
        meta_weights(model, x, bad, mx, my, opt)
    with pytest.raises(ValueError, match=r"labels have shape \(3, 4, 4\) but the model returns logits"):
        meta_weights(model, x, y[:, :4, :4], mx, my, opt)
    with pytest.raises(ValueError, match=r"labels of shape \(3, 8, 8\) and meta_labels of shape \(2, 8\)"):
        meta_weights(model, x, y, mx, my[:, 0], opt)
    probs = F.one_hot(y, 3).movedim(-1, 1).double()  # per-pixel probability targets (B, K, H, W)
    torch.testing.assert_close(
        meta_weights(model, x, probs, mx, my, opt).raw, meta_weights(model, x, y, mx, my, opt).raw
    )


def test_given_pseudo_labels_enter_the_second_cost_row_of_every_exact_engine():
    """pseudo_labels_from(fn): the engines' second row is the cost against fn(logits); with fn
    giving class 0 everywhere it equals the first row of labels that are class 0 everywhere."""
    from l2b.meta import pseudo_labels_from

    model, opt, x, y, mx, my = _setup("unet", 3, seed=5)
    zeros = torch.zeros_like(y)
    for engine in ("forward", "reverse", "fused"):
        with pseudo_labels_from(lambda logits: torch.zeros(logits.shape[0], *logits.shape[2:], dtype=torch.long)):
            w = meta_weights(model, x, y, mx, my, opt, engine=engine)
        plain = meta_weights(model, x, zeros, mx, my, opt, engine=engine)
        assert torch.equal(w.pseudo_labels, zeros)
        torch.testing.assert_close(w.raw[1], plain.raw[0], rtol=0, atol=1e-12)


def test_the_five_views_and_their_averaged_pseudo_mask():
    from l2b.segmentation.views import averaged_pseudo_labels, draw_views, masks_of, views_of

    g = torch.Generator().manual_seed(0)
    plan = draw_views(2, (48, 48), generator=g)
    assert plan.zoom_out.shape == (2, 2) and (plan.zoom_out[:, 0] != plan.zoom_out[:, 1]).all()
    x = torch.rand(2, 1, 48, 48, dtype=torch.float64)
    v = views_of(x, plan)
    assert v.shape == (10, 1, 48, 48) and torch.equal(v[0], x[0]) and torch.equal(v[5], x[1])
    flips = {1: (-2,), 2: (-1,), 3: (-2, -1)}
    assert torch.equal(v[4], torch.flip(x[0], flips[int(plan.flip[0])]))
    q = int(plan.zoom_out[0, 0])
    assert float(v[2, :, :q].abs().sum()) == 0  # a zoom-out pads with zeros
    masks = torch.zeros(2, 48, 48, dtype=torch.long)
    masks[:, 12:36, 16:40] = 1
    mv = masks_of(masks, plan, 2)
    assert mv.shape == (10, 48, 48) and torch.equal(mv[0], masks[0])
    # a network that predicts every view's mask confidently: the averaged pseudo-mask is that mask
    logits = torch.nn.functional.one_hot(mv, 2).movedim(-1, 1).double() * 8
    agree = (averaged_pseudo_labels(logits, plan) == mv).double().mean()
    assert float(agree) > 0.98


def test_an_l2b_step_with_five_views():
    from l2b.methods import Batch, StepContext, create_method

    model, opt, x, y, mx, my = _setup("unet", 2, seed=2)
    method = create_method("l2b", pseudo_views=5, meta_step=True)
    out = method.step(model, opt, Batch(x, y, meta_inputs=mx, meta_labels=my), StepContext(num_classes=2))
    assert out.alpha.shape == (3, H, W) and out.pseudo_labels.shape == (3, H, W) and out.predictions.shape == (3, H, W)
    assert "meta_step_loss" in out.stats
    with pytest.raises(ValueError, match="pseudo_views must be 1"):
        create_method("l2b", pseudo_views=3)
    with pytest.raises(ValueError, match=r"pseudo_views=5 takes images \(B, C, H, W\) with masks"):
        method.step(model, opt, Batch(x, y[:, 0, 0], meta_inputs=mx, meta_labels=my[:, 0, 0]),
                    StepContext(num_classes=2))  # fmt: skip
