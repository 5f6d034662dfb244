"""The restricted engines ``head`` and ``tail``: exact for the part of the network they cover.

Their reference is the published double backward restricted to that part (autograd on its
parameters only, the rest of the network frozen), finite differences through a real
torch.optim.SGD step with the rest frozen, and the ``forward`` engine on a model whose other
parameters have ``requires_grad=False``.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from l2b import TrainConfig, meta_weights
from l2b import distributed as l2b_dist
from l2b.cli.main import main
from l2b.meta import ENGINES, meta_tangents, model_blocks, sgd_update, tail_parameters, virtual_step
from l2b.methods import Batch, StepContext, create_method, mixup
from l2b.models import create_model

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


class Named(nn.Module):
    """Not a Sequential, head called ``fc``, with a BatchNorm before it."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 9), nn.BatchNorm1d(9), nn.Tanh())
        self.fc = nn.Linear(9, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))


def trained(model, opt_kw, shape, num_classes, steps=3, seed=0, params=None, dtype=torch.float64):
    """`model` in float64 after a few real SGD steps (momentum buffers present), and its optimizer."""
    torch.manual_seed(seed)
    model = model.to(dtype)
    opt = torch.optim.SGD(model.parameters() if params is None else params(model), **opt_kw)
    gen = torch.Generator().manual_seed(seed + 100)
    for _ in range(steps):
        x = torch.randn(12, *shape, generator=gen, dtype=dtype)
        y = torch.randint(0, num_classes, (12,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, gen


def batches(gen, shape, num_classes, b=10, m=7):
    x = torch.randn(b, *shape, generator=gen, dtype=torch.float64)
    y = torch.randint(0, num_classes, (b,), generator=gen)
    mx = torch.randn(m, *shape, generator=gen, dtype=torch.float64)
    my = torch.randint(0, num_classes, (m,), generator=gen)
    return x, y, mx, my


def restricted_double_backward(model, opt, names, x, y, mx, my):
    """-dL_meta/d eps (2, B) by the published double backward, autograd on the parameters `names`
    only: they take the real optimizer's virtual step (sgd_update, checked against torch's SGD
    in test_meta_gradient), every other parameter is held at its value."""
    model.train()
    step = virtual_step(model, opt)
    fixed = {n: p.detach() for n, p in model.named_parameters()}
    leaves = {n: fixed[n].clone().requires_grad_() for n in names}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    logits = functional_call(model, {**fixed, **leaves, **buffers}, (x,))
    pseudo = logits.detach().argmax(1)
    eps = torch.zeros(2, x.shape[0], dtype=logits.dtype, requires_grad=True)
    cost = torch.stack(
        [F.cross_entropy(logits, y, reduction="none"), F.cross_entropy(logits, pseudo, reduction="none")]
    )
    grads = torch.autograd.grad((eps * cost).sum(), list(leaves.values()), create_graph=True)
    moved = {n: sgd_update(leaves[n], g, step.hyper[n]) for n, g in zip(leaves, grads)}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    meta = F.cross_entropy(functional_call(model, {**fixed, **moved, **buffers}, (mx,)), my)
    return -torch.autograd.grad(meta, eps)[0]


def frozen_except(model, opt, names):
    """Copies of `model` and `opt` with every parameter outside `names` frozen (requires_grad=False)."""
    other, other_opt = copy.deepcopy((model, opt))
    for n, p in other.named_parameters():
        p.requires_grad_(n in names)
    return other, other_opt


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


# --------------------------------------------------------------------------------------------
# head
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(SGD_VARIANTS))
def test_head_scores_equal_a_double_backward_restricted_to_the_head(variant):
    model, opt, gen = trained(bn_cnn(), SGD_VARIANTS[variant], (3, 6, 6), 5)
    x, y, mx, my = batches(gen, (3, 6, 6), 5, b=16, m=12)
    ref = restricted_double_backward(model, opt, ["7.weight", "7.bias"], x, y, mx, my)
    got = meta_weights(model, x, y, mx, my, opt, engine="head")
    assert ref.abs().max() > 0 and not torch.equal(got.pseudo_labels, y)
    assert rel(got.raw, ref) <= 1e-10
    # the same sign and scale as the exact engine on a model trained only in its head
    frozen, frozen_opt = frozen_except(model, opt, {"7.weight", "7.bias"})
    fwd = meta_weights(frozen, x, y, mx, my, frozen_opt, engine="forward")
    assert rel(got.raw, fwd.raw) <= 1e-10
    torch.testing.assert_close(got.alpha, fwd.alpha, rtol=1e-9, atol=1e-12)
    assert got.meta_loss == pytest.approx(fwd.meta_loss, rel=1e-12)


def test_head_matches_finite_differences_of_real_sgd_with_the_backbone_frozen():
    """The head's virtual step is torch's own: central differences through real SGD steps of a
    copy whose backbone has requires_grad=False (SGD then leaves it alone: no decay, no momentum)."""
    model, opt, gen = trained(Named(3), SGD_VARIANTS["nesterov"], (6,), 3)
    x, y, mx, my = batches(gen, (6,), 3, b=6, m=5)
    with torch.no_grad():
        pseudo = copy.deepcopy(model).train()(x).argmax(1)

    def meta_loss(eps):
        m2, o2 = copy.deepcopy((model, opt))
        for n, p in m2.named_parameters():
            p.requires_grad_(n.startswith("fc."))
        logits = m2.train()(x)
        c = torch.stack(
            [F.cross_entropy(logits, y, reduction="none"), F.cross_entropy(logits, pseudo, reduction="none")]
        )
        o2.zero_grad()
        (eps * c).sum().backward()
        o2.step()
        with torch.no_grad():
            return float(F.cross_entropy(m2(mx), my))

    h = 1e-5
    fd = torch.zeros(2, 6, dtype=torch.float64)
    for k in range(2):
        for i in range(6):
            e = torch.zeros(2, 6, dtype=torch.float64)
            e[k, i] = h
            fd[k, i] = -(meta_loss(e) - meta_loss(-e)) / (2 * h)
    assert fd.abs().max() > 1e-4
    torch.testing.assert_close(meta_weights(model, x, y, mx, my, opt, engine="head").raw, fd, rtol=1e-5, atol=1e-8)


def test_head_with_parameter_groups_probability_targets_and_a_named_head():
    torch.manual_seed(1)
    model = Named(4).double()
    params = [
        {"params": list(model.body.parameters())},
        {"params": [model.fc.weight], "lr": 0.03, "weight_decay": 1e-2},
        {"params": [model.fc.bias], "weight_decay": 0.0, "momentum": 0.5},
    ]
    model, opt, gen = trained(model, dict(lr=0.1, momentum=0.9, weight_decay=1e-3), (6,), 4, params=lambda m: params)
    x, y, mx, my = batches(gen, (6,), 4, b=9, m=6)
    targets = torch.softmax(torch.randn(9, 4, generator=gen, dtype=torch.float64), 1)  # as after mixup
    ref = restricted_double_backward(model, opt, ["fc.weight", "fc.bias"], x, targets, mx, my)
    for head in (None, "fc"):
        got = meta_weights(model, x, targets, mx, my, opt, engine="head", head=head)
        assert rel(got.raw, ref) <= 1e-10


def test_a_head_outside_the_optimizer_gives_zero_scores():
    model, _, gen = trained(Named(3), SGD_VARIANTS["momentum+wd"], (6,), 3)
    opt = torch.optim.SGD(model.body.parameters(), lr=0.1)
    x, y, mx, my = batches(gen, (6,), 3)
    w = meta_weights(model, x, y, mx, my, opt, engine="head")
    assert torch.count_nonzero(w.raw) == 0 and w.all_zero


class NoLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


class ScaledHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.side = nn.Linear(4, 4)  # registered after the head: the last nn.Linear, not the output

    def forward(self, x):
        return self.fc(torch.tanh(self.side(x))) * 2.0


class TwiceHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.fc(x)))


def test_models_without_a_linear_head_are_refused_clearly():
    sgd = dict(lr=0.1)
    x4, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    cases = [
        (NoLinear(), torch.randn(5, 3, 6, 6), None, r"model NoLinear has no nn\.Linear.*engine='tail'"),
        (ScaledHead(), x4, None, r"ScaledHead's nn\.Linear 'side' is not the model's output.*head='<module name>'"),
        (ScaledHead(), x4, "fc", r"ScaledHead's nn\.Linear 'fc' is not the model's output.*engine='forward'"),
        (TwiceHead(), torch.randn(5, 3), None, r"TwiceHead's nn\.Linear 'fc' ran 2 times"),
        (ScaledHead(), x4, "nope", r"head='nope': model ScaledHead has no submodule 'nope'.*'fc', 'side'"),
        (
            bn_cnn().float(),
            torch.randn(5, 3, 6, 6),
            "1",
            r"head='1': Sequential\.1 is a BatchNorm2d, not an nn\.Linear",
        ),
    ]
    for model, x, head, match in cases:
        opt = torch.optim.SGD(model.parameters(), **sgd)
        with pytest.raises(ValueError, match=match):
            meta_weights(model, x, y, x, y, opt, engine="head", head=head)
        with pytest.raises(ValueError, match=match):  # the training step says the same, hooks gone
            create_method("l2b", engine="head", head=head).step(
                model, opt, Batch(x, y, meta_inputs=x, meta_labels=y), StepContext(num_classes=4)
            )
        assert not any(m._forward_hooks for m in model.modules())


# --------------------------------------------------------------------------------------------
# tail
# --------------------------------------------------------------------------------------------

# (name, input shape, options, float64?): the residual networks run in float32 to keep the test fast
SHIPPED = [
    ("mlp", (8,), {"hidden": (12, 10)}, True),
    ("small_cnn", (3, 8, 8), {"width": 4}, True),
    ("fast_cnn", (3, 8, 8), {"width": 4}, True),
    ("preact_resnet18", (3, 8, 8), {}, False),
    ("resnet18", (3, 16, 16), {}, False),
    ("resnet50", (3, 16, 16), {}, False),
]


def shipped(name, shape, options, num_classes=4, double=True):
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes, in_shape=shape, **options)
    dtype = torch.float64 if double else torch.float32
    return trained(model, SGD_VARIANTS["momentum+wd"], shape, num_classes, steps=1, dtype=dtype)


def parametrised_blocks(model):
    return sum(1 for _, b in model_blocks(model) if any(p.requires_grad for p in b.parameters()))


@pytest.mark.parametrize("name, shape, options, double", SHIPPED, ids=[s[0] for s in SHIPPED])
def test_tail_over_every_block_is_the_forward_engine_on_the_shipped_models(name, shape, options, double):
    model, opt, gen = shipped(name, shape, options, double=double)
    x, y, mx, my = (t if not t.is_floating_point() or double else t.float() for t in batches(gen, shape, 4, b=6, m=5))
    k = parametrised_blocks(model)
    assert set(tail_parameters(model, k)) == {n for n, _ in model.named_parameters()}
    fwd = meta_weights(model, x, y, mx, my, opt, engine="forward")
    tail = meta_weights(model, x, y, mx, my, opt, engine="tail", tail_modules=k)
    assert rel(tail.raw, fwd.raw) <= 1e-6
    # one block is the head, in every shipped model
    head = meta_weights(model, x, y, mx, my, opt, engine="head")
    one = meta_weights(model, x, y, mx, my, opt, engine="tail", tail_modules=1)
    assert rel(one.raw, head.raw) <= (1e-10 if double else 1e-4)
    with pytest.raises(ValueError, match=f"tail_modules={k + 1} but model .* has {k} blocks"):
        meta_weights(model, x, y, mx, my, opt, engine="tail", tail_modules=k + 1)


def test_tail_of_one_block_is_head_on_an_mlp():
    model, opt, gen = shipped("mlp", (8,), {})
    x, y, mx, my = batches(gen, (8,), 4)
    assert tail_parameters(model, 1) == ("classifier.weight", "classifier.bias")
    head = meta_weights(model, x, y, mx, my, opt, engine="head")
    tail = meta_weights(model, x, y, mx, my, opt, engine="tail", tail_modules=1)
    assert rel(tail.raw, head.raw) <= 1e-12 and torch.equal(tail.pseudo_labels, head.pseudo_labels)
    torch.testing.assert_close(tail.alpha, head.alpha, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_tail_equals_a_double_backward_over_its_blocks(k):
    """Tangents start inside the network, through train-mode BatchNorm: still exact."""
    model, opt, gen = trained(bn_cnn(), SGD_VARIANTS["dampening"], (3, 6, 6), 5)
    x, y, mx, my = batches(gen, (3, 6, 6), 5, b=16, m=12)
    names = tail_parameters(model, k)
    blocks = {1: ("7",), 2: ("4", "7"), 4: ("1", "3", "4", "7")}[k]  # ReLU and Flatten hold nothing
    assert names == tuple(f"{b}.{p}" for b in blocks for p in ("weight", "bias"))
    ref = restricted_double_backward(model, opt, list(names), x, y, mx, my)
    got = meta_weights(model, x, y, mx, my, opt, engine="tail", tail_modules=k)
    assert rel(got.raw, ref) <= 1e-9
    frozen, frozen_opt = frozen_except(model, opt, set(names))
    fwd = meta_weights(frozen, x, y, mx, my, frozen_opt, engine="forward")
    assert rel(got.raw, fwd.raw) <= 1e-12


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class BadBlocks(Plain):
    def meta_blocks(self):
        return [self.b]


def test_tail_needs_the_order_of_the_blocks():
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    for model, match in (
        (Plain(), r"model Plain's blocks, but Plain is not an nn\.Sequential and defines no meta_blocks\(\)"),
        (BadBlocks(), r"BadBlocks\.meta_blocks\(\) leaves out the trainable parameter\(s\) a\.weight, a\.bias"),
    ):
        with pytest.raises(ValueError, match=match):
            meta_weights(model, x, y, x, y, torch.optim.SGD(model.parameters(), lr=0.1), engine="tail", tail_modules=1)
    with pytest.raises(ValueError, match="engine='tail' needs tail_modules=k"):
        meta_weights(Plain(), x, y, x, y, torch.optim.SGD(Plain().parameters(), lr=0.1), engine="tail")


def test_engine_options_are_refused_for_engines_they_do_not_apply_to():
    for kwargs, match in (
        (dict(engine="forward", tail_modules=2), r"tail_modules=2 is the number of last blocks for engine='tail'"),
        (dict(engine="head", tail_modules=1), r"does not apply to engine='head'"),
        (dict(engine="tail", tail_modules=0), r"needs tail_modules=k, a positive int"),
        (dict(engine="tail", tail_modules=True), r"needs tail_modules=k, a positive int"),
        (dict(engine="fused", head="fc"), r"head='fc' names the output nn\.Linear for engine='head'"),
    ):
        with pytest.raises(ValueError, match=match):
            create_method("l2b", **kwargs)
    assert {"head", "tail"} <= set(ENGINES)


# --------------------------------------------------------------------------------------------
# the training step
# --------------------------------------------------------------------------------------------


def hooks_left(model):
    return [
        (n, kind)
        for n, m in model.named_modules()
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
        if getattr(m, kind)
    ]


@pytest.mark.parametrize("engine", ["head", "tail"])
@pytest.mark.parametrize("use_mixup", [False, True])
def test_the_training_step_is_meta_weights_then_one_real_step(engine, use_mixup):
    """Same weights, loss, parameters, momentum and BatchNorm statistics as meta_weights followed
    by a hand-written real step; BatchNorm moves once (the real forward's) and no hook remains."""
    opts = {"tail_modules": 2} if engine == "tail" else {}
    torch.manual_seed(0)
    base = create_model("small_cnn", num_classes=4, in_shape=(2, 6, 6), width=3).double()
    gen = torch.Generator().manual_seed(1)
    data = [batches(gen, (2, 6, 6), 4, b=12, m=9) for _ in range(3)]
    step_model, hand = copy.deepcopy(base), copy.deepcopy(base)
    step_opt = torch.optim.SGD(step_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    hand_opt = torch.optim.SGD(hand.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    method = create_method("l2b", engine=engine, mixup=use_mixup, **opts)
    for s, (x, y, mx, my) in enumerate(data):  # later steps have momentum buffers
        out = method.step(
            step_model,
            step_opt,
            Batch(x, y, meta_inputs=mx, meta_labels=my),
            StepContext(num_classes=4, generator=torch.Generator().manual_seed(s)),
        )
        assert not hooks_left(step_model)
        targets = y
        if use_mixup:
            x, targets = mixup(x, y, 4, alpha=method.mixup_alpha, generator=torch.Generator().manual_seed(s))
        mw = meta_weights(hand, x, targets, mx, my, hand_opt, engine=engine, **opts)
        hand.train()
        logits = hand(x)
        loss = (mw.alpha * F.cross_entropy(logits, targets, reduction="none")).sum() + (
            mw.beta * F.cross_entropy(logits, mw.pseudo_labels, reduction="none")
        ).sum()
        hand_opt.zero_grad()
        loss.backward()
        hand_opt.step()
        torch.testing.assert_close(out.alpha, mw.alpha, rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(out.beta, mw.beta, rtol=1e-9, atol=1e-14)
        assert out.loss == pytest.approx(float(loss.detach()), rel=1e-10)
        assert float(out.alpha.sum() + out.beta.sum()) == pytest.approx(1.0) or out.stats["all_zero"] == 1.0
    for (k, v), (_, w) in zip(step_model.state_dict().items(), hand.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=1e-9, atol=1e-12, msg=k)  # running stats and counts included
    assert int(step_model.features[1].num_batches_tracked) == 3  # one real forward per step


def test_the_head_step_updates_batchnorm_statistics_once_and_leaves_no_hooks():
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=4, in_shape=(6,), hidden=(8,)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x, y, mx, my = batches(gen, (6,), 4, b=10, m=30)  # a meta batch of different statistics
    mx = 3.0 * mx + 1.0
    expected = copy.deepcopy(model).train()
    with torch.no_grad():
        expected(x)  # one real forward on the noisy batch, nothing else
    create_method("l2rw", engine="head").step(
        model, opt, Batch(x, y, meta_inputs=mx, meta_labels=my), StepContext(num_classes=4)
    )
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(model.features[1], name), getattr(expected.features[1], name))
    assert not hooks_left(model)


def test_the_head_step_trains_a_named_head():
    torch.manual_seed(0)
    model = Named(4).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(2)
    x, y, mx, my = batches(gen, (6,), 4)
    before = model.fc.weight.detach().clone()
    out = create_method("l2b", engine="head", head="fc").step(
        model, opt, Batch(x, y, meta_inputs=mx, meta_labels=my), StepContext(num_classes=4)
    )
    assert out.alpha.shape == (10,) and not torch.equal(before, model.fc.weight)


# --------------------------------------------------------------------------------------------
# data parallelism: one process per replica gives the weights of one process on the whole batch
# --------------------------------------------------------------------------------------------


class ThreadCollective:
    """A Collective for replicas run as threads of one process (sum and max through a barrier)."""

    def __init__(self, rank: int, world: int, slots: list, barrier: threading.Barrier) -> None:
        self.rank, self.world_size, self._slots, self._barrier = rank, world, slots, barrier

    def _reduce(self, t, op):
        self._slots[self.rank] = t.clone()
        self._barrier.wait()
        out = op(torch.stack(self._slots))
        self._barrier.wait()  # everyone has read before the next reduction writes
        return out

    def sum(self, t):
        return self._reduce(t, lambda s: s.sum(0))

    def max(self, t):
        return self._reduce(t, lambda s: s.max(0).values)


def run_replicas(fn, world=2):
    """fn(rank, collective) in `world` threads; their results in rank order.

    A replica that raises aborts the barrier, so the others fail instead of waiting forever, and
    its error is re-raised here. The timeout bounds a reduction that some replica never reaches.
    """
    slots, barrier, got, errors = [None] * world, threading.Barrier(world, timeout=120), [None] * world, []

    def replica(r):
        try:
            got[r] = fn(r, ThreadCollective(r, world, slots, barrier))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=replica, args=(r,), daemon=True) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a replica thread did not finish"
    if errors:
        raise errors[0]
    return got


def replica_setup():
    torch.manual_seed(0)
    model, opt, gen = trained(
        nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)), SGD_VARIANTS["nesterov"], (5,), 3
    )
    x, y, mx, my = batches(gen, (5,), 3, b=7, m=5)
    cols, mcols = torch.tensor_split(torch.arange(7), 2), torch.tensor_split(torch.arange(5), 2)
    return model, opt, (x, y, mx, my), cols, mcols


def test_head_replicas_give_the_weights_of_the_concatenated_batch():
    model, opt, (x, y, mx, my), cols, mcols = replica_setup()
    ref = meta_weights(model, x, y, mx, my, opt, engine="head")
    # Each replica owns its model, as under DDP: the head engine's forward hooks on one shared
    # model would see the other thread's forwards.
    copies = [copy.deepcopy((model, opt)) for _ in range(2)]
    got = run_replicas(
        lambda r, ctx: meta_weights(
            copies[r][0],
            x[cols[r]],
            y[cols[r]],
            mx[mcols[r]],
            my[mcols[r]],
            copies[r][1],
            engine="head",
            collective=ctx,
        )
    )
    torch.testing.assert_close(torch.cat([g.raw for g in got], 1), ref.raw, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(torch.cat([g.alpha for g in got]), ref.alpha, rtol=1e-10, atol=1e-14)
    assert got[0].meta_loss == pytest.approx(ref.meta_loss, rel=1e-12)


@pytest.mark.parametrize("k", [1, 2])
def test_tail_replicas_get_the_tangents_of_the_concatenated_meta_batch(k):
    """The restricted meta_tangents reduce over the replicas (the dual forward that follows is
    local; threads cannot run it at once, forward-mode AD levels being global: the two-process
    test below covers the whole step)."""
    model, opt, (_, _, mx, my), _, mcols = replica_setup()
    names = tail_parameters(model, k)
    ref, ref_loss = meta_tangents(model, mx, my, opt, params=names)
    copies = [copy.deepcopy((model, opt)) for _ in range(2)]
    got = run_replicas(
        lambda r, ctx: meta_tangents(
            copies[r][0], mx[mcols[r]], my[mcols[r]], copies[r][1], collective=ctx, params=names
        )
    )
    assert set(ref) == set(names)
    for tangents, loss in got:
        assert set(tangents) == set(names) and loss == pytest.approx(ref_loss, rel=1e-12)
        for n in names:
            torch.testing.assert_close(tangents[n], ref[n], rtol=1e-10, atol=1e-14)


WORLD, D, K, B, M = 2, 5, 3, 7, 5
DDP_CONFIGS = {
    "head": dict(engine="head"),
    "tail1": dict(engine="tail", tail_modules=1),
    "tail2": dict(engine="tail", tail_modules=2),
}


def _ddp_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, K)).double()


def _ddp_batches():
    g = torch.Generator().manual_seed(4)
    return [
        (
            torch.randn(B, D, generator=g, dtype=torch.float64),
            torch.randint(0, K, (B,), generator=g),
            torch.randn(M, D, generator=g, dtype=torch.float64),
            torch.randint(0, K, (M,), generator=g),
        )
        for _ in range(3)
    ]


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    ctx = l2b_dist.setup(
        rank=rank,
        world_size=WORLD,
        device="cpu",
        init_method=f"file://{init_file}",
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        results = {}
        for key, opts in DDP_CONFIGS.items():
            model = l2b_dist.wrap_ddp(_ddp_model(), ctx)
            opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-3)
            method = create_method("l2b", **opts)
            alphas = []
            for x, y, mx, my in _ddp_batches():
                cols, mcols = l2b_dist.shard(torch.arange(B), rank, WORLD), l2b_dist.shard(torch.arange(M), rank, WORLD)
                out = method.step(
                    model,
                    opt,
                    Batch(x[cols], y[cols], meta_inputs=mx[mcols], meta_labels=my[mcols]),
                    StepContext(num_classes=K, dist=ctx),
                )
                alphas.append(l2b_dist.gather_cat(out.alpha))
            results[key] = {"alpha": alphas, "params": copy.deepcopy(model.module.state_dict())}
        torch.save(results, f"{out_dir}/rank{rank}.pt")
        # Both ranks leave together, as run_experiment's processes do: a rank that tore its
        # connections down while the other was still saving aborted it in gloo's teardown
        # ("terminate called without an active exception", seen once in CI under load).
        l2b_dist.barrier()
    finally:
        l2b_dist.shutdown()


@pytest.mark.skipif(
    not (torch_dist.is_available() and torch_dist.is_gloo_available()), reason="needs torch.distributed with gloo"
)
def test_two_ddp_processes_train_as_one_with_the_cheap_engines(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    replicas = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for key, opts in DDP_CONFIGS.items():
        model = _ddp_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-3)
        method = create_method("l2b", **opts)
        alphas = [
            method.step(model, opt, Batch(x, y, meta_inputs=mx, meta_labels=my), StepContext(num_classes=K)).alpha
            for x, y, mx, my in _ddp_batches()
        ]
        for res in replicas:
            for a, b in zip(res[key]["alpha"], alphas):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
            for k, v in model.state_dict().items():
                torch.testing.assert_close(res[key]["params"][k], v, rtol=1e-6, atol=1e-9, msg=f"{key} {k}")


# --------------------------------------------------------------------------------------------
# configs and the command line
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, match",
    [
        (
            {"method": "ce", "engine_head": "fc"},
            r"config engine_head='fc' does not apply to method 'ce': it is for methods .* only \(engine 'head'",
        ),
        (
            {"method": "bootstrap-soft", "engine_tail_modules": 2},
            r"config engine_tail_modules=2 .*method 'bootstrap-soft'",
        ),
        ({"engine": "forward", "engine_tail_modules": 2}, r"tail_modules=2 .* does not apply to engine='forward'"),
        ({"engine": "fused", "engine_head": "fc"}, r"head='fc' .* does not apply to engine='fused'"),
        ({"engine": "head", "engine_tail_modules": 1}, r"does not apply to engine='head'"),
        ({"engine": "tail"}, r"engine='tail' needs tail_modules=k.*engine_tail_modules"),
        ({"engine": "tail", "engine_tail_modules": "2"}, r"engine_tail_modules='2' should be of type int"),
    ],
)
def test_the_new_config_keys_are_refused_where_they_do_not_apply(values, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(values, source="my.yaml")


def test_the_new_config_keys_reach_the_method():
    cfg = TrainConfig.from_dict({"method": "l2rw", "engine": "tail", "engine_tail_modules": 2})
    assert cfg.method_options["tail_modules"] == 2 and cfg.method_options["engine"] == "tail"
    assert TrainConfig(engine="head", engine_head="classifier").method_options["head"] == "classifier"
    assert TrainConfig().engine_head is None and TrainConfig().engine_tail_modules is None
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_the_cli_takes_the_new_engines_and_refuses_misplaced_options(capsys):
    assert main(["train", "--engine", "tail", "--engine-tail-modules", "2", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "engine: tail" in out and "tail_modules: 2" in out
    assert main(["train", "--method", "ce", "--engine-tail-modules", "2", "--print-config"]) == 2
    assert "does not apply to method 'ce'" in capsys.readouterr().err
    assert main(["train", "--engine", "forward", "--engine-head", "fc", "--print-config"]) == 2
    assert "does not apply to engine='forward'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# the fidelity benchmark
# --------------------------------------------------------------------------------------------


def test_the_fidelity_benchmark_runs_and_the_exact_engines_agree(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    prefix = tmp_path / "ef"
    cmd = [
        sys.executable,
        str(root / "benchmarks" / "studies" / "engine_fidelity.py"),
        "--quick",
        "--out-prefix",
        str(prefix),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(prefix.with_suffix(".json").read_text())
    assert data["environment"]["torch"] and data["environment"]["torch_num_threads"] == 1
    (checkpoints,) = [s["checkpoints"] for s in data["sets"].values()]
    assert [c["epoch"] for c in checkpoints] == [1, 2, 3]
    for c in checkpoints:
        assert set(c["engines"]) == {"forward", "reverse", "head", "tail-2"}
        for name in ("forward", "reverse"):  # both exact
            assert c["engines"][name]["spearman"] == pytest.approx(1.0) and c["engines"][name]["jaccard"] == 1.0
        assert 0 < c["engines"]["head"]["ap_alpha"] <= 1 and -1 <= c["engines"]["head"]["spearman"] <= 1
    assert "| head |" in prefix.with_suffix(".md").read_text()
