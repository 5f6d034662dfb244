"""`meta_every k`: the meta-gradient on every k-th step, the steps between weighted by each
example's remembered weights; checked against hand computations, and a run interrupted
mid-epoch resumes equal to the uninterrupted one (the memory is checkpointed)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_resume import assert_same_run, interrupt_at_method_step

from l2b.methods import create_method
from l2b.methods import meta as meta_module
from l2b.methods.step import Batch, StepContext
from l2b.models import create_model
from l2b.training import TrainConfig, run_experiment

K, D, N, B = 3, 10, 12, 4


class _Source:
    """What start_epoch reads of the training set: its size."""

    def __len__(self) -> int:
        return N


def _batch(rows, generator) -> Batch:
    rows = torch.as_tensor(rows)
    return Batch(
        inputs=torch.randn(len(rows), D, generator=generator, dtype=torch.float64),
        labels=torch.randint(0, K, (len(rows),), generator=generator),
        index=rows,
        meta_inputs=torch.randn(6, D, generator=generator, dtype=torch.float64),
        meta_labels=torch.randint(0, K, (6,), generator=generator),
    )


def test_the_steps_between_reuse_each_examples_last_weights(monkeypatch):
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=K, in_shape=(D,), hidden=[8], batchnorm=False).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    method = create_method("l2b", meta_every=3)
    method.start_epoch(model, _Source(), epoch=0, device=torch.device("cpu"))
    assert method.memory.shape == (N, 2) and bool(method.memory.isnan().all())
    engine_calls = []
    real = method._engine.step

    def spy(*args, **kwargs):
        engine_calls.append(len(engine_calls))
        return real(*args, **kwargs)

    monkeypatch.setattr(method._engine, "step", spy)
    g = torch.Generator().manual_seed(0)
    ctx = StepContext(num_classes=K, generator=g)
    exact = []
    for rows in [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [0, 1, 2, 3], [4, 5, 6, 7], [8, 1, 4, 0]]:
        batch = _batch(rows, g)
        before = method.memory.clone()
        with torch.no_grad():
            own = model(batch.inputs).argmax(1)  # the model's predictions before the step
        calls = len(engine_calls)
        out = method.step(model, optimizer, batch, ctx)
        exact.append(len(engine_calls) > calls)
        w = torch.stack([out.alpha, out.beta], dim=1).double()
        assert float(w.sum()) == pytest.approx(1.0)
        if exact[-1]:  # the memory now holds the step's weights times the batch size
            torch.testing.assert_close(method.memory[rows], w * len(rows))
        else:  # the remembered weights, renormalised over the batch; pseudo-labels its own
            remembered = before[rows]
            torch.testing.assert_close(w, remembered / remembered.sum())
            assert torch.equal(out.pseudo_labels, own)
    # steps 0-2 meet unscored examples; then every 3rd step (3) is exact, 4 and 5 reuse
    assert exact == [True, True, True, True, False, False]
    assert method.state_dict()["steps"] == 6
    assert create_method("l2b").state_dict() == {}  # meta_every 1: no memory, checkpoints unchanged


def test_reused_weights_weigh_the_real_costs():
    """A reuse step's loss is sum_i alpha_i CE(z_i, y_i) + beta_i CE(z_i, argmax z_i)."""
    torch.manual_seed(1)
    model = create_model("mlp", num_classes=K, in_shape=(D,), hidden=[8], batchnorm=False).double()
    method = create_method("l2b", meta_every=2)
    remembered = torch.tensor([[0.5, 1.5], [0.0, 2.0], [1.0, 1.0], [0.25, 0.0]], dtype=torch.float64)
    x, y = torch.randn(4, D, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    loss, out = method._reused_weights_loss(model, x, y, remembered)
    z = model(x)
    w = remembered / remembered.sum()
    expected = (w[:, 0] * F.cross_entropy(z, y, reduction="none")).sum() + (
        w[:, 1] * F.cross_entropy(z, z.argmax(1), reduction="none")
    ).sum()
    torch.testing.assert_close(loss, expected)
    zero, out = method._reused_weights_loss(model, x, y, torch.zeros(4, 2, dtype=torch.float64))
    assert float(zero.detach()) == 0.0 and out.stats["all_zero"] == 1.0


def test_meta_every_is_checked_and_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="meta_every"):
        TrainConfig(method="l2b", meta_every=0)
    with pytest.raises(ValueError, match="does not apply to method 'ce'"):
        TrainConfig(method="ce", meta_every=2)
    method = create_method("l2b", meta_every=2)
    with pytest.raises(ValueError, match="needs the epoch's start"):
        method._remembered(Batch(inputs=torch.zeros(1), labels=torch.zeros(1)), None)


RUN = {"epochs": 4, "warmup_epochs": 1, "device": "cpu", "seed": 3, "meta_every": 3}


def test_a_run_with_meta_every_costs_fewer_meta_gradients_and_resumes_exactly(tmp_path, monkeypatch):
    reused, real_reuse = [], meta_module._MetaMethod._reused_weights_loss

    def count(self, *args):
        reused.append(self.steps)
        return real_reuse(self, *args)

    monkeypatch.setattr(meta_module._MetaMethod, "_reused_weights_loss", count)
    full = run_experiment(TrainConfig(**RUN), out_dir=tmp_path / "full", progress=False, log=None)
    assert math.isfinite(full["test_accuracy"])
    steps = reused[-1]  # the last reuse step's count: every step of the three l2b epochs
    per_epoch = steps // 3
    # the first l2b epoch meets unscored examples at every step; then two steps in three reuse
    assert min(reused) > per_epoch and len(reused) == pytest.approx(2 * (steps - per_epoch) / 3, abs=2)
    monkeypatch.setattr(meta_module._MetaMethod, "_reused_weights_loss", real_reuse)
    real = interrupt_at_method_step(monkeypatch, 30)  # inside the third epoch (the second of l2b)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(TrainConfig(**RUN), out_dir=tmp_path / "cut", progress=False, log=None)
    import l2b.training.setup as setup_mod

    monkeypatch.setattr(setup_mod, "create_method", real)
    run_experiment(TrainConfig(**RUN), out_dir=tmp_path / "cut", progress=False, log=None, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_meta_step_is_one_more_sgd_step_on_the_clean_meta_batch():
    """meta_step: the weighted step, then exactly a plain SGD step on the meta batch's mean CE."""
    import copy

    torch.manual_seed(0)
    model = create_model("mlp", num_classes=K, in_shape=(D,), hidden=[8], batchnorm=False).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    twin, twin_opt = copy.deepcopy((model, opt))
    batch = _batch([0, 1, 2, 3], torch.Generator().manual_seed(1))
    ctx = StepContext(num_classes=K, generator=torch.Generator().manual_seed(2))
    out = create_method("l2b", meta_step=True).step(model, opt, batch, ctx)
    create_method("l2b").step(twin, twin_opt, batch, ctx)
    twin_opt.zero_grad()
    F.cross_entropy(twin(batch.meta_inputs), batch.meta_labels).backward()
    twin_opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert out.stats["meta_step_loss"] > 0
