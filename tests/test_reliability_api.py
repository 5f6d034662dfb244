"""Bad inputs to the library's entry points get a message naming the argument, key or value and
saying what to do (through the command line: exit 2 for a refusal, never a traceback).

One test per entry point: l2b.meta_weights, l2b.fit, config files, evaluate / predict on an
unfinished run, and in-memory image data that cannot fit in memory.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import l2b
from l2b.cli.main import main
from l2b.rundir import CHECKPOINT, lock_holder, lock_run_dir, write_run_config
from l2b.training.config import NOISE_CHOICES, TrainConfig
from l2b.training.inference import load_trained_model
from l2b.training.validation import IncompleteMetaSetWarning


def cli(capsys, *args) -> tuple[int, str]:
    """(exit code, stderr) of the command line, run in-process."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, err


# ----------------------------------------------------------------------------------------------
# l2b.meta_weights
# ----------------------------------------------------------------------------------------------


def test_meta_weights_refuses_bad_labels_batches_models_and_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    mx, my = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])

    def call(**changes):
        args = dict(model=model, inputs=x, labels=y, meta_inputs=mx, meta_labels=my, optimizer=opt)
        return l2b.meta_weights(**{**args, **changes})

    base = call()
    same = call(labels=y.int(), meta_labels=my.to(torch.int16))  # other integer dtypes: converted, same weights
    assert torch.equal(base.alpha, same.alpha) and torch.equal(base.beta, same.beta)
    for engine, extra in (("forward", {}), ("reverse", {}), ("head", {}), ("tail", {"tail_modules": 1})):
        with pytest.raises(ValueError, match=re.escape("labels[2]=3 is outside [0, 3)")):
            call(labels=torch.tensor([0, 1, 3, 0, 1, 2]), engine=engine, **extra)
        with pytest.raises(ValueError, match=re.escape("meta_labels[4]=7 is outside [0, 3)")):
            call(meta_labels=torch.tensor([0, 1, 2, 0, 7]), engine=engine, **extra)
    with pytest.raises(ValueError, match=re.escape("meta_labels[1]=-1 is negative")):
        call(meta_labels=torch.tensor([0, -1, 2, 0, 1]))
    with pytest.raises(ValueError, match="labels must be integer class indices.*torch.float32"):
        call(labels=y.float())
    with pytest.raises(ValueError, match="labels has 4 columns but the model returns 3 logits"):
        call(labels=torch.full((6, 4), 0.25))
    with pytest.raises(ValueError, match="labels has 5 rows but inputs has 6"):
        call(labels=y[:5])
    with pytest.raises(ValueError, match="meta_labels has 4 rows but meta_inputs has 5"):
        call(meta_labels=my[:4])
    with pytest.raises(ValueError, match=re.escape("inputs is empty (shape (0, 4))")):
        call(inputs=x[:0], labels=y[:0])
    with pytest.raises(ValueError, match=re.escape("meta_inputs is empty (shape (0, 4))")):
        call(meta_inputs=mx[:0], meta_labels=my[:0])
    bad = x.clone()
    bad[3, 1], bad[5, 0] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=re.escape("inputs: example 3 holds NaN or Inf values (2 of 6 examples)")):
        call(inputs=bad)
    with pytest.raises(ValueError, match=re.escape("meta_inputs: example 3 holds NaN or Inf")):
        call(meta_inputs=bad, meta_labels=y)
    frozen = nn.Sequential(nn.Linear(4, 3)).requires_grad_(False)
    with pytest.raises(ValueError, match="model has no trainable parameter"):
        call(model=frozen, optimizer=torch.optim.SGD(frozen.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="the optimizer updates none of the model's trainable parameters"):
        call(optimizer=torch.optim.SGD(nn.Linear(4, 3).parameters(), lr=0.1))
    # A frozen backbone is held fixed: the weights are those of a model trained only at its head,
    # which the head engine computes in closed form.
    model[0].requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    full, head = call(engine="forward"), call(engine="head")
    assert torch.allclose(full.raw, head.raw, atol=1e-6) and float(full.raw.abs().max()) > 0
    model[0].requires_grad_(True)


# ----------------------------------------------------------------------------------------------
# l2b.fit
# ----------------------------------------------------------------------------------------------


def test_fit_refuses_string_labels_an_incomplete_meta_set_and_a_class_only_in_meta():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)).astype(np.float32), np.arange(30) % 3
    mx, my = rng.normal(size=(6, 4)).astype(np.float32), np.arange(6) % 3
    names = np.array(["cat", "dog", "eel"])

    def fit(train, meta, **kw):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        return l2b.fit(model, train, meta, epochs=2, warmup_epochs=1, batch_size=8, meta_batch_size=4, **kw)

    for train, meta, which in (((x, names[y]), (mx, my), "train"), ((x, y), (mx, names[my].astype(object)), "meta")):
        with pytest.raises(ValueError, match=f"{which} labels must be integer class indices") as err:
            fit(train, meta)
        assert "'cat'" in str(err.value) and "np.unique(labels, return_inverse=True)" in str(err.value)
        assert "l2b.sklearn.L2BClassifier" in str(err.value)
    assert len(fit((x, y.astype(object)), (mx, my)).history) == 2  # an object array of ints is fine
    with pytest.raises(ValueError, match=r"l2b.fit meta: the meta set \(6 examples\) has no example of class 2"):
        fit((x, y), (mx, my % 2))
    with pytest.warns(IncompleteMetaSetWarning, match="no example of class 2"):
        fit((x, y), (mx, my % 2), allow_incomplete_meta=True)
    with pytest.raises(ValueError, match="train has no example of class 2 .*which the meta set holds"):
        fit((x[y != 2], y[y != 2]), (mx, my))


# ----------------------------------------------------------------------------------------------
# config files
# ----------------------------------------------------------------------------------------------


def test_config_floats_in_exponent_form_and_unknown_noise_method_and_model(tmp_path, capsys):
    values = yaml.safe_load("lr: 1e-2\nweight_decay: 5e-4\nmomentum: '.8'\n")
    assert values["lr"] == "1e-2"  # YAML 1.1: a float needs a dot
    config = TrainConfig.from_dict(values, source="c.yaml")
    assert (config.lr, config.weight_decay, config.momentum) == (0.01, 0.0005, 0.8)
    for key, value in (("lr", "abc"), ("lr", "nan"), ("lr", "1e-2x"), ("epochs", "3"), ("augment", "true")):
        with pytest.raises(ValueError, match=re.escape(f"c.yaml: {key}={value!r} should be of type")):
            TrainConfig.from_dict({key: value}, source="c.yaml")
    with pytest.raises(ValueError, match="config noise='gaussian' must be one of " + ", ".join(NOISE_CHOICES)):
        TrainConfig.from_dict({"noise": "gaussian"}, source="c.yaml")
    assert {"none", "symmetric", "pair", "instance", "file"} <= set(NOISE_CHOICES)
    for key, value, known in (("method", "l2x", "known methods: "), ("model", "vgg", "known models: ")):
        with pytest.raises(ValueError, match=f"unknown {key} '{value}'; {known}"):
            TrainConfig.from_dict({key: value}, source="c.yaml")
    # Through the command line: read, checked, refused with exit 2 or printed.
    (tmp_path / "ok.yaml").write_text("lr: 1e-2\nweight_decay: 5e-4\n")
    assert main(["train", "--config", str(tmp_path / "ok.yaml"), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    printed = printed.get("config", printed)
    assert printed["lr"] == 0.01 and printed["weight_decay"] == 0.0005
    (tmp_path / "bad.yaml").write_text("noise: gaussian\n")
    code, err = cli(capsys, "train", "--config", tmp_path / "bad.yaml", "--out", tmp_path / "run")
    assert code == 2 and "noise='gaussian' must be one of" in err and "instance, file" in err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# evaluate / predict on a run without model.pt
# ----------------------------------------------------------------------------------------------


def test_an_unfinished_run_says_whether_to_wait_resume_or_start_again(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    write_run_config(run, TrainConfig(epochs=2, warmup_epochs=1).to_dict(), {"l2b": l2b.__version__})

    def message() -> str:
        with pytest.raises(FileNotFoundError) as err:
            load_trained_model(run, num_classes=10, in_shape=(64,))
        return str(err.value)

    # Stopped before its first checkpoint: nothing to resume.
    assert lock_holder(run) is None
    text = message()
    assert "stopped before its first checkpoint" in text and f"l2b train --config {run / 'config.yaml'}" in text
    assert "--resume" not in text
    code, err = cli(capsys, "evaluate", run)
    assert code == 2 and "stopped before its first checkpoint" in err
    # A checkpoint and no live owner: resume it.
    (run / CHECKPOINT).write_bytes(b"not read")
    assert f"continue it with `l2b train --resume {run}`" in message()
    # Still training (its lock held, here by this process on another file description): wait.
    with lock_run_dir(run):
        holder = lock_holder(run)
        assert holder is not None and holder.startswith(f"process {os.getpid()} on host ")
        text = message()
        assert f"is still training ({holder}); wait for it to finish" in text and "--resume" not in text
        code, err = cli(capsys, "evaluate", run)
        assert code == 2 and "still training" in err
    assert lock_holder(run) is None and not (run / "run.lock").exists()


# ----------------------------------------------------------------------------------------------
# in-memory image data larger than memory
# ----------------------------------------------------------------------------------------------


def test_in_memory_images_that_cannot_fit_are_refused_before_decoding(tmp_path, monkeypatch, capsys):
    image = pytest.importorskip("PIL.Image")
    import l2b.data.imagefolder as imagefolder

    for c, name in enumerate(("cat", "dog")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            image.fromarray(np.full((10, 10, 3), 40 * c + i, np.uint8)).save(tmp_path / "data" / name / f"{i}.png")
    decoded = []
    real_decode = imagefolder.decode_images
    monkeypatch.setattr(imagefolder, "decode_images", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    monkeypatch.setattr(imagefolder, "_available_memory", lambda: 100_000)
    # 8 images x 3 x 64 x 64 x (1 + 4) bytes = 480 KiB > 100 kB: refused before any image is decoded.
    with pytest.raises(ValueError) as err:
        imagefolder.load_imagefolder(root=tmp_path / "data", image_size=64, lazy=False, test_fraction=0.0)
    text = str(err.value)
    assert "holding its 8 images in memory at image_size 64 needs about 0.5 MiB" in text
    assert "but 0.1 MiB is available" in text and "--lazy" in text and "smaller --image-size" in text
    assert not decoded
    train, _ = imagefolder.load_imagefolder(root=tmp_path / "data", image_size=8, lazy=False, test_fraction=0.0)
    assert train.inputs.shape == (8, 3, 8, 8)  # 8 x 3 x 8 x 8 x 5 bytes fits
    # An allocation that fails anyway (the estimate passed) gives the same message.
    monkeypatch.setattr(imagefolder, "_available_memory", lambda: None)

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 4.00 TiB")

    monkeypatch.setattr(imagefolder, "decode_images", no_memory)
    with pytest.raises(ValueError, match="needs about .* but an unknown amount of memory is available; .*--lazy"):
        imagefolder.load_imagefolder(root=tmp_path / "data", image_size=64, lazy=False, test_fraction=0.0)
    # Through the command line: exit 2, no traceback.
    monkeypatch.setattr(imagefolder, "decode_images", real_decode)
    monkeypatch.setattr(imagefolder, "_available_memory", lambda: 100_000)
    args = ("--data", "imagefolder", "--data-root", tmp_path / "data", "--method", "ce", "--image-size", "64")
    code, err = cli(capsys, "train", *args, "--epochs", "1", "--out", tmp_path / "run")
    assert code == 2 and "holding its 8 images in memory at image_size 64" in err and "--lazy" in err
