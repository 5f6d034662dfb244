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
