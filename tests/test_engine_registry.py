"""The meta-gradient engines as registered objects: one registry lists them, each has a
stand-alone form (what l2b.meta_weights calls) and an in-step form that gives the same weights,
and no module outside the registry chooses between engines by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import l2b
from l2b.meta import Engine, create_engine, list_engines, meta_weights
from l2b.names import ENGINES

SRC = Path(l2b.__file__).resolve().parent


def test_the_registry_lists_the_names_the_command_line_shows():
    assert tuple(list_engines()) == ENGINES
    for name in list_engines():
        options = {"tail_modules": 1} if name == "tail" else {}
        engine = create_engine(name, **options)
        assert isinstance(engine, Engine) and engine.name == name


def test_a_mistyped_engine_and_misplaced_options_are_refused():
    with pytest.raises(ValueError, match=r"did you mean 'forward'\?"):
        create_engine("foward")
    with pytest.raises(ValueError, match="head='fc' names the output nn.Linear"):
        create_engine("forward", head="fc")
    with pytest.raises(ValueError, match="engine='tail' needs tail_modules"):
        create_engine("tail")


def test_no_engine_dispatch_outside_the_registry():
    dispatch = re.compile(r"engine\s*(==|!=|in\s*\()|_(forward|head|tail|reverse)_engine\b")
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        if "engines" not in path.relative_to(SRC).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if dispatch.search(line)
    ]
    assert offenders == []


def _batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(10, 6, dtype=torch.double), torch.randint(0, 3, (10,))
    mx, my = torch.randn(6, 6, dtype=torch.double), torch.tensor([0, 1, 2, 0, 1, 2])
    return model, optimizer, x, y, mx, my


@pytest.mark.parametrize("name, options", [("forward", {}), ("fused", {}), ("reverse", {}), ("head", {}),
                                           ("tail", {"tail_modules": 2})])  # fmt: skip
def test_the_in_step_form_gives_the_stand_alone_weights_and_the_real_logits(name, options):
    model, optimizer, x, y, mx, my = _batch()
    engine = create_engine(name, **options)
    alone = meta_weights(model, x, y, mx, my, optimizer, engine=engine)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    logits, in_step = engine.step(
        model, model, inputs=x, targets=y, meta_inputs=mx, meta_labels=my, optimizer=optimizer, method="l2b"
    )
    assert logits.requires_grad  # the real forward: the step back-propagates it
    model.load_state_dict(state)
    torch.testing.assert_close(in_step.alpha, alone.alpha, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(in_step.beta, alone.beta, rtol=1e-10, atol=1e-12)
    assert torch.equal(in_step.pseudo_labels, alone.pseudo_labels)


@pytest.mark.parametrize("engine", ["forward", "fused", "head", "tail"])
def test_dividemix_l2b_takes_every_engine(engine, tmp_path):
    from l2b.training import TrainConfig, run_experiment

    extra = {"engine_tail_modules": 2} if engine == "tail" else {}
    config = TrainConfig(
        method="dividemix-l2b", engine=engine, feature_noise=0.3, epochs=2, warmup_epochs=1, train_subset=300,
        num_meta=50, **extra,
    )  # fmt: skip
    summary = run_experiment(config, out_dir=tmp_path / engine, progress=False, log=None)
    assert summary["test_accuracy_at_best_meta"] > 0.3
