"""Faults during a run: non-finite steps, a full disk, an unwritable run directory.

Each test checks what the user is promised: a clear message, finished work kept, and a run that
can be continued with ``--resume`` once the cause is gone.
"""

import errno
import json

import numpy as np
import pytest
import torch

import l2b.rundir as rundir
import l2b.training.setup as setup_mod  # where a run builds its method
from l2b.cli.main import main
from l2b.methods import Batch, StepContext, create_method
from l2b.models import create_model
from l2b.training import TensorData, TrainConfig, Trainer, run_experiment
from l2b.training.optim import sgd_with_cosine
from l2b.training.trainer import TrainingDiverged

SMALL = TrainConfig(epochs=3, warmup_epochs=1, device="cpu", seed=2)


def _trainer(method="l2b", max_bad_steps=3, log=None, n=64):
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=3, in_shape=(4,), hidden=(16,))  # BatchNorm inside
    opt, sched = sgd_with_cosine(
        model.parameters(),
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        nesterov=False,
        epochs=2,
        num_examples=n,
        batch_size=16,
    )
    trainer = Trainer(
        model,
        create_method(method),
        opt,
        sched,
        num_classes=3,
        batch_size=16,
        meta_batch_size=8,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        max_bad_steps=max_bad_steps,
        log=log,
    )
    g = torch.Generator().manual_seed(1)
    train = TensorData(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))
    meta = TensorData(torch.randn(12, 4, generator=g), torch.arange(12) % 3)
    return trainer, train, meta


@pytest.mark.parametrize("method", ["ce", "l2b", "l2rw"])
def test_a_batch_with_nan_inputs_is_skipped_and_leaves_the_model_untouched(method):
    lines = []
    trainer, train, meta = _trainer(method, log=lines.append)
    train.inputs[5] = float("nan")  # poisons exactly one batch per epoch (its loss, weights, gradient)
    result = trainer.fit(train, meta, epochs=2)
    assert [r["skipped_steps"] for r in result.history] == [1, 1]
    assert len(lines) == 2 and "non-finite loss or gradient, step skipped" in lines[0]
    for name, t in {**dict(trainer.model.named_parameters()), **dict(trainer.model.named_buffers())}.items():
        assert torch.isfinite(t).all(), name  # BatchNorm statistics restored, not NaN
    for state in trainer.optimizer.state.values():
        assert torch.isfinite(state["momentum_buffer"]).all()
    assert all(np.isfinite(r["train_loss"]) for r in result.history)


def test_a_skipped_step_changes_nothing_that_a_step_would():
    trainer, train, meta = _trainer("l2b")
    trainer.fit(train, meta, epochs=1)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    momentum = [s["momentum_buffer"].clone() for s in trainer.optimizer.state.values()]
    x = torch.full((16, 4), float("inf"))
    y = torch.zeros(16, dtype=torch.int64)
    buffers = {k: b.clone() for k, b in trainer.model.named_buffers()}
    with pytest.raises(Exception) as info:
        trainer.method.step(
            trainer.model,
            trainer.optimizer,
            Batch(x, y, meta_inputs=meta.inputs[:8], meta_labels=meta.labels[:8]),
            StepContext(num_classes=3),
        )
    assert type(info.value).__name__ == "NonFiniteStep"
    trainer._skip_step(buffers, 0)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for a, s in zip(momentum, trainer.optimizer.state.values()):
        assert torch.equal(a, s["momentum_buffer"])


def test_consecutive_non_finite_steps_stop_the_run_with_a_clear_message():
    trainer, train, meta = _trainer("l2b", max_bad_steps=3)
    train.inputs[:] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 3: 3 consecutive steps had a non-finite loss"):
        trainer.fit(train, meta, epochs=2)


def test_diverged_run_keeps_its_last_good_checkpoint_and_the_cli_says_why(tmp_path, monkeypatch, capsys):
    """NaN losses from epoch 2 on: the run stops, the checkpoint of epoch 1 is intact and loadable."""
    real_create = setup_mod.create_method

    def poisoned(name, **opts):
        method = real_create(name, **opts)
        real_loss = method.loss

        def loss(*a, **kw):
            value, out = real_loss(*a, **kw)
            return value * float("nan"), out

        method.loss = loss
        return method

    monkeypatch.setattr(setup_mod, "create_method", poisoned)  # the method after warm-up only
    code = main(
        [
            "train",
            "--epochs",
            "3",
            "--warmup-epochs",
            "1",
            "--max-bad-steps",
            "4",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "training stopped at epoch 2, step 4: 4 consecutive steps" in err
    ckpt = rundir.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["trainer"]["epoch"] == 1 and ckpt["trainer"]["cursor"] is None
    assert all(torch.isfinite(v).all() for v in ckpt["trainer"]["model"].values() if v.is_floating_point())
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    # Once the cause is gone, the run continues from that checkpoint.
    monkeypatch.setattr(setup_mod, "create_method", real_create)
    assert main(["train", "--resume", str(tmp_path / "run"), "--quiet"]) == 0


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: half written, then the disk is full
            f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(rundir.torch, "save", failing_save)
    with pytest.raises(
        OSError,
        match=r"could not write the checkpoint .*checkpoint.pt \(No space left on device\); "
        r"the previous checkpoint, if any, is unchanged",
    ):
        run_experiment(SMALL, out_dir=tmp_path / "run", progress=False, log=None)
    monkeypatch.setattr(rundir.torch, "save", real_save)
    run = tmp_path / "run"
    assert rundir.load_checkpoint(run / "checkpoint.pt")["trainer"]["epoch"] == 1
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []  # no torn temporary file left
    summary = run_experiment(SMALL, out_dir=run, progress=False, log=None, resume=True)
    full = run_experiment(SMALL, out_dir=tmp_path / "full", progress=False, log=None)
    assert summary["test_accuracy"] == full["test_accuracy"]


def test_disk_full_while_writing_outputs_keeps_the_checkpoint(tmp_path, monkeypatch):
    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    with pytest.raises(OSError, match=r"could not write the outputs of .* its checkpoint is kept"):
        run_experiment(SMALL, out_dir=tmp_path / "run", progress=False, log=None)
    monkeypatch.undo()
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and not (tmp_path / "run" / "summary.json").exists()
    summary = run_experiment(SMALL, out_dir=tmp_path / "run", progress=False, log=None, resume=True)
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_too_little_free_space_is_reported_before_training(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: usage._replace(free=4096))
    with pytest.raises(OSError, match=r"only 0.0 MiB free on the disk of .*run; this run needs about"):
        run_experiment(SMALL, out_dir=tmp_path / "run", progress=False, log=None)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_unwritable_run_directory_is_reported_before_anything_runs(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    code = main(["train", "--epochs", "1", "--warmup-epochs", "0", "--quiet", "--out", str(blocker / "run")])
    assert code == 1
    assert f"cannot write to the run directory {blocker / 'run'}" in capsys.readouterr().err
