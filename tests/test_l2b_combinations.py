"""The L2B step of the published combinations (DivideMix + L2B, UNICON + L2B), checked against
hand computations of its inputs: after network 0's own step and before network 1's, network 0
only, on the step's un-mixed views (DivideMix: both weak views; UNICON: both strong views) with
the base method's soft targets (co-refined labelled rows, co-guessed unlabelled rows, sharpened
at T), the meta batch (the clean one, or the labelled part's first weak view with its given
labels), cost row 2 against the network's own argmax, and the published gradient clip."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from l2b.methods import TwoNetworks, create_method
from l2b.methods import dividemix as dividemix_module
from l2b.methods.step import Batch, StepContext
from l2b.models import create_model

K, B, D = 3, 8, 12


def _pair(projection_dim=None) -> TwoNetworks:
    torch.manual_seed(0)
    # No BatchNorm or dropout: a forward in train mode is a function of the weights alone, so the
    # targets can be recomputed from a copy of the networks.
    nets = [create_model("mlp", num_classes=K, in_shape=(D,), hidden=[16], batchnorm=False) for _ in range(2)]
    return TwoNetworks(*nets, projection_dim=projection_dim).double()


def _sharpen(p, t=0.5):
    p = p ** (1 / t)
    return p / p.sum(1, keepdim=True)


def _soft_targets(net, other, x1, x2, labels, w, labelled):
    """Co-refined targets of the labelled rows, co-guessed targets of the others (by hand)."""
    with torch.no_grad():
        p1, p2 = net(x1).softmax(1), net(x2).softmax(1)
        q1, q2 = other(x1).softmax(1), other(x2).softmax(1)
    onehot = F.one_hot(labels, K).double()
    refined = _sharpen(w[:, None] * onehot + (1 - w[:, None]) * (p1 + p2) / 2)[labelled]
    guessed = _sharpen((p1 + p2 + q1 + q2)[~labelled] / 4)
    return torch.cat([refined, refined, guessed, guessed])


def _batch(generator):
    x = torch.randn(B, D, generator=generator, dtype=torch.float64)
    views = {name: torch.randn(B, D, generator=generator, dtype=torch.float64) for name in ("second", "s1", "s2")}
    return Batch(
        inputs=x,
        labels=torch.randint(0, K, (B,), generator=generator),
        index=torch.arange(B),
        meta_inputs=torch.randn(5, D, generator=generator, dtype=torch.float64),
        meta_labels=torch.randint(0, K, (5,), generator=generator),
        views={"second": views["second"], "strong_1": views["s1"], "strong_2": views["s2"]},
    )


def _run_step(method, model, batch, monkeypatch):
    """One step of `method`; returns the copy of the networks before it, what the L2B step's
    engine was given (with the networks as they were then) and the clip of each optimizer step."""
    before = copy.deepcopy(model)
    calls, clips = [], []
    real_step = method.l2b_step.engine.step

    def spy(member, forward, **kwargs):
        calls.append({**kwargs, "nets": copy.deepcopy(model.nets)})
        logits, mw = real_step(member, forward, **kwargs)
        calls[-1]["own_argmax"] = torch.equal(mw.pseudo_labels, logits.argmax(1))
        return logits, mw

    real_optimizer_step = dividemix_module._optimizer_step

    def clip_spy(model_, optimizer, loss, clip):
        clips.append(clip)
        return real_optimizer_step(model_, optimizer, loss, clip)

    monkeypatch.setattr(method.l2b_step.engine, "step", spy)
    monkeypatch.setattr(dividemix_module, "_optimizer_step", clip_spy)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ctx = StepContext(num_classes=K, generator=torch.Generator().manual_seed(1), epoch=3, first_epoch=1)
    method.step(model, optimizer, batch, ctx)
    return before, calls, clips


def _check_call(call, before, inputs, targets, meta_inputs, meta_labels):
    torch.testing.assert_close(call["inputs"], inputs, rtol=0, atol=0)
    torch.testing.assert_close(call["targets"], targets, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(call["meta_inputs"], meta_inputs, rtol=0, atol=0)
    assert torch.equal(call["meta_labels"], meta_labels)
    assert call["method"] == "l2b" and call["own_argmax"]
    # after network 0's own step (its weights moved), before network 1's (its weights did not)
    changed = [not torch.equal(a, b) for a, b in zip(call["nets"][0].parameters(), before.nets[0].parameters())]
    assert any(changed)
    assert all(torch.equal(a, b) for a, b in zip(call["nets"][1].parameters(), before.nets[1].parameters()))


@pytest.mark.parametrize("meta_split", ["clean", "labelled"])
def test_dividemix_l2b_step_inputs(meta_split, monkeypatch):
    batch = _batch(torch.Generator().manual_seed(0))
    model = _pair()
    method = create_method("dividemix-l2b", meta_split=meta_split)
    # network 0 trains on network 1's division: clean probabilities above 0.5 are labelled
    method.clean_prob = torch.tensor([[0.9] * B, [0.95, 0.1, 0.7, 0.2, 0.8, 0.6, 0.3, 0.55]], dtype=torch.float64)
    before, calls, clips = _run_step(method, model, batch, monkeypatch)
    w = method.clean_prob[1]
    labelled = w > 0.5
    x1, x2 = batch.inputs, batch.views["second"]
    inputs = torch.cat([x1[labelled], x2[labelled], x1[~labelled], x2[~labelled]])
    targets = _soft_targets(before.nets[0], before.nets[1], x1, x2, batch.labels, w, labelled)
    meta = (batch.meta_inputs, batch.meta_labels) if meta_split == "clean" else (x1[labelled], batch.labels[labelled])
    assert len(calls) == 1  # network 0 only
    _check_call(calls[0], before, inputs, targets, *meta)
    assert clips == [None, 0.8, None]  # network 0's MixMatch, its L2B step (published clip), network 1's


@pytest.mark.parametrize("meta_split", ["clean", "labelled"])
def test_unicon_l2b_step_inputs(meta_split, monkeypatch):
    batch = _batch(torch.Generator().manual_seed(0))
    model = _pair(projection_dim=8)
    method = create_method("unicon-l2b", meta_split=meta_split)
    # the epoch's uniform selection and refinement weights (weight 1 below divergence 0.5)
    method.labelled = torch.tensor([True, False, True, True, False, True, False, False])
    method.weight = torch.tensor([1.0, 1.0, 0.4, 1.0, 0.35, 0.3, 1.0, 1.0], dtype=torch.float64)
    before, calls, clips = _run_step(method, model, batch, monkeypatch)
    labelled, w = method.labelled, method.weight
    s1, s2 = batch.views["strong_1"], batch.views["strong_2"]
    # the strong views, un-mixed, with targets from the weak views
    inputs = torch.cat([s1[labelled], s2[labelled], s1[~labelled], s2[~labelled]])
    targets = _soft_targets(
        before.nets[0], before.nets[1], batch.inputs, batch.views["second"], batch.labels, w, labelled
    )
    meta = (
        (batch.meta_inputs, batch.meta_labels)
        if meta_split == "clean"
        else (batch.inputs[labelled], batch.labels[labelled])
    )
    assert len(calls) == 1
    _check_call(calls[0], before, inputs, targets, *meta)
    assert clips == [None, 0.25, None]  # published for CIFAR-10 (0.8 for others: unicon_l2b_clip)


def test_unicon_l2b_options_are_declared_and_checked():
    from l2b.methods import METHODS

    keys = {o.config_key: o.default for o in METHODS.options("unicon-l2b")}
    assert keys["unicon_meta"] == "clean" and keys["unicon_l2b_clip"] == 0.25 and keys["engine"] == "forward"
    with pytest.raises(ValueError, match="meta_split must be one of clean, labelled"):
        create_method("unicon-l2b", meta_split="noisy")
    assert create_method("unicon-l2b", meta_split="labelled").needs_meta is False
    # one constructor, each combination's own published clip unless given (None: no clip)
    assert create_method("unicon-l2b").l2b_clip_grad == 0.25 and create_method("dividemix-l2b").l2b_clip_grad == 0.8
    assert create_method("dividemix-l2b", l2b_clip_grad=None).l2b_step.clip_grad is None
    assert create_method("unicon-l2b", l2b_clip_grad=0.5).l2b_step.clip_grad == 0.5
